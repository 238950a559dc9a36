"""A campaign-shaped writer for the archive soak: ``python archive_writer.py URL LOG ROUNDS NAME PACE_S``.

Each round adds a candidate, its results and cache entries, as a campaign does, and between rounds
opens and drops a second archive object on the same URL (a second ``optimize`` or a dashboard in
the same process). Every row is logged only after its transaction committed, so each logged line
must be found in the archive at the end.
"""

import sys
import time

from agentopt.agents.models.llm import Completion, Payer
from agentopt.agents.prompt import PromptAgent
from agentopt.archive.cache import SqlCallCache
from agentopt.archive.facade import Archive as QueryArchive
from agentopt.archive.paths import checked_url
from agentopt.archive.store import Archive, ExampleOutcome

RESULTS_PER_ROUND = 10


def main(url: str, log_path: str, rounds: int, name: str, pace_s: float) -> None:
    archive = Archive(url)
    cache = SqlCallCache(archive)
    campaign = archive.create_campaign(name, "task", "ape", {})
    with open(log_path, "a") as log:
        log.write(f"campaign {campaign}\n")
        for round_ in range(rounds):
            candidate, _ = archive.add_candidate(campaign, PromptAgent(instruction=f"{name} round {round_}."), "ape")
            log.write(f"candidate {candidate}\n")
            for i in range(RESULTS_PER_ROUND):
                archive.add_result(candidate, "train", ExampleOutcome(f"ex-{i}", f"answer {i}", 1.0, None, {}))
                log.write(f"result {candidate} ex-{i}\n")
            key = f"{name}-{round_}"
            cache.put(key, {"model": "m"}, Completion("x", 1, 1, 0.1), Payer(campaign))
            log.write(f"call {key}\n")
            archive.update_evaluation(candidate, "train")
            log.flush()
            checked_url(url)
            QueryArchive(url).engine.dispose()
            time.sleep(pace_s)  # the rounds spread over the time the other processes come and go
        archive.finish_campaign(campaign, "finished", {})
        log.write("finished\n")
    archive.engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
