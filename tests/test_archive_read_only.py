"""A read-only archive (the dashboard's, the report's) is read-only by how it is opened: SQLite by
``mode=ro``, PostgreSQL by a connection option. No statement it runs can undo that."""

import pytest
from sqlalchemy import func, select

from agentopt.archive.errors import ArchiveError
from agentopt.agents.prompt import PromptAgent
from agentopt.agents.runtime.sandbox import Limits, run_sandboxed
from agentopt.archive.models import Candidate
from agentopt.archive.store import Archive

# What code on a reader's connection could run to switch back to writing, per backend.
UNDO = {"sqlite": "PRAGMA query_only=OFF", "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"}


def test_a_read_only_archive_refuses_writes_even_after_its_session_settings_are_undone(db_url: str) -> None:
    writer = Archive(db_url)
    campaign = writer.create_campaign("c", "antonyms", "ape", {})
    reader = Archive(db_url, create=False, read_only=True)
    assert reader.campaign(campaign).name == "c"
    with reader.engine.connect() as conn:
        conn.exec_driver_sql(UNDO[reader.engine.dialect.name])
        conn.commit()
        with pytest.raises(Exception, match="(?i)read.only|readonly"):
            conn.exec_driver_sql("DELETE FROM campaigns")
    with pytest.raises(Exception, match="(?i)read.only|readonly"):
        reader.add_candidate(campaign, PromptAgent(instruction="sneaked in"), "ape")
    with writer.session() as s:
        assert s.scalar(select(func.count(Candidate.id))) == 0
        assert writer.campaign(campaign).name == "c"
    reader.engine.dispose()
    writer.engine.dispose()


def test_opening_an_archive_masks_its_password_in_sandboxed_output() -> None:
    """An archive URL given in Python (not through AGENTOPT_DB) still never comes back from an agent."""
    with pytest.raises(ArchiveError):  # no server there; the password is registered before connecting
        Archive("postgresql+psycopg://owner:Opened-pw-8812@127.0.0.1:1/agentopt")
    result = run_sandboxed("def agent(x):\n    return x\n", "agent", ["pw Opened-pw-8812"],
                           limits=Limits(cpu_s=5, wall_s=20))
    assert result.ok and result.value == "pw [redacted]", result
