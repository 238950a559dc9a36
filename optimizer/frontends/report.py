"""``agentopt report``: the dashboard's campaign page frozen into a folder, readable from the file system.

The page is rendered from the same views and template as ``agentopt dashboard``'s ``/campaigns/ID``:
what the search did (racing estimates, validation and test scores, the best so far and proposals,
against calls, seconds or dollars), scores per strategy, score against tokens, the seed against the
best agent on test, budgets and dedup. plotly.js and the dashboard's script and style are copied next
to ``index.html``, so the folder can be zipped, mailed or served as is, offline.
"""

import shutil
from datetime import UTC, datetime
from pathlib import Path

from agentopt.agents.runtime.errors import ConfigError
from agentopt.archive.export import staged_output
from agentopt.archive.store import Archive

ASSETS = ("dashboard.js", "dashboard.css")


def write_report(archive: Archive, campaign_id: str, out: Path) -> Path:
    """Write ``index.html`` and its scripts into ``out`` (created; existing report files are replaced,
    and only once all of them are written, so a failure leaves ``out`` as it was). The dashboard's
    modules are imported here, not above, so that without the ``dashboard`` extra the library and the
    command line say which extra to install instead of failing on import."""
    try:
        from agentopt.optimizer.frontends.dashboard import views
        from agentopt.optimizer.frontends.dashboard.app import code_css, environment, plotly_js, static_dir
    except ImportError as exc:
        raise ConfigError(f"the report is drawn by the dashboard: pip install 'agentopt[dashboard]' "
                          f"({exc.name} missing)") from None
    data = views.campaign_page(archive, campaign_id, "val", True, None, None, 1)
    page = environment().get_template("campaign.html").render(
        static=True, poll_ms=0, live_url=None, frozen_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), **data)
    with staged_output(out, empty=False) as folder:
        shutil.copyfile(plotly_js(), folder / "plotly.min.js")
        for name in ASSETS:
            shutil.copyfile(static_dir() / name, folder / name)
        (folder / "code.css").write_text(code_css(), encoding="utf-8")
        (folder / "index.html").write_text(page, encoding="utf-8")
    return out / "index.html"
