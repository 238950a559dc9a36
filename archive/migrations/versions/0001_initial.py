"""The first archive schema, as created by agentopt before migrations existed.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("task", sa.String(200), nullable=False),
        sa.Column("strategy", sa.String(100), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN, nullable=True),
    )
    op.create_index("ix_campaigns_task", "campaigns", ["task"])
    op.create_table(
        "candidates",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("campaign_id", sa.String(32), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("strategy", sa.String(100), nullable=False),
        sa.Column("rationale", sa.Text(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.UniqueConstraint("campaign_id", "content_hash", name="uq_candidates_campaign_id"),
    )
    op.create_index("ix_candidates_campaign_id", "candidates", ["campaign_id"])
    op.create_table(
        "lineage",
        sa.Column("child_id", sa.Integer(), sa.ForeignKey("candidates.id"), primary_key=True),
        sa.Column("parent_id", sa.Integer(), sa.ForeignKey("candidates.id"), primary_key=True),
    )
    op.create_index("ix_lineage_parent_id", "lineage", ["parent_id"])
    op.create_table(
        "results",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("candidate_id", sa.Integer(), sa.ForeignKey("candidates.id"), nullable=False),
        sa.Column("split", sa.String(10), nullable=False),
        sa.Column("example_id", sa.String(100), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("llm_calls", sa.Integer(), nullable=False),
        sa.Column("cache_hits", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.UniqueConstraint("candidate_id", "split", "example_id", name="uq_results_candidate_id"),
    )
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("candidate_id", sa.Integer(), sa.ForeignKey("candidates.id"), nullable=False),
        sa.Column("split", sa.String(10), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("n_errors", sa.Integer(), nullable=False),
        sa.Column("mean", sa.Float(), nullable=True),
        sa.Column("ci_low", sa.Float(), nullable=True),
        sa.Column("ci_high", sa.Float(), nullable=True),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.UniqueConstraint("candidate_id", "split", name="uq_evaluations_candidate_id"),
    )
    op.create_index("ix_evaluations_split_mean", "evaluations", ["split", "mean"])
    op.create_table(
        "llm_calls",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("finish_reason", sa.String(20), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
    )


def downgrade() -> None:
    for table in ("llm_calls", "evaluations", "results", "lineage", "candidates", "campaigns"):
        op.drop_table(table)
