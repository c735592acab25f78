"""The schema, one named step at a time, applied in this order. A database records the names of the steps it
has had (table `migrations`), so features developed side by side each add their own step. A step is never
edited once released: add a new one."""

MIGRATIONS: list[tuple[str, str]] = [
    ("0001_jobs_images_ledger", """
    CREATE TABLE users (
        id          INTEGER PRIMARY KEY,          -- the Discord user id
        name        TEXT NOT NULL,
        created_at  TEXT NOT NULL
    );
    CREATE TABLE jobs (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        owner_id        INTEGER NOT NULL REFERENCES users(id),
        guild_id        INTEGER,
        channel_id      INTEGER NOT NULL,
        kind            TEXT NOT NULL,            -- imagine | reroll | variation | upscale
        prompt          TEXT NOT NULL,
        negative_prompt TEXT NOT NULL DEFAULT '',
        params          TEXT NOT NULL,            -- JSON: width, height, steps, guidance, strength, scale
        model           TEXT NOT NULL,
        seed            INTEGER NOT NULL,
        cost            INTEGER NOT NULL,
        status          TEXT NOT NULL,            -- queued | running | done | failed | cancelled
        error           TEXT,
        parent_job_id   INTEGER REFERENCES jobs(id),
        parent_index    INTEGER,
        message_id      INTEGER,
        created_at      TEXT NOT NULL,
        started_at      TEXT,
        finished_at     TEXT
    );
    CREATE INDEX jobs_by_owner ON jobs(owner_id, id);
    CREATE INDEX jobs_by_status ON jobs(status);
    CREATE TABLE images (
        job_id  INTEGER NOT NULL REFERENCES jobs(id),
        idx     INTEGER NOT NULL,                 -- 1..4 in a grid; 1 for an upscale
        seed    INTEGER NOT NULL,
        path    TEXT NOT NULL,                    -- relative to the data directory
        width   INTEGER NOT NULL,
        height  INTEGER NOT NULL,
        PRIMARY KEY (job_id, idx)
    );
    CREATE TABLE ledger (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id     INTEGER NOT NULL REFERENCES users(id),
        job_id      INTEGER NOT NULL REFERENCES jobs(id),
        amount      INTEGER NOT NULL,             -- images: + when charged, - when refunded
        reason      TEXT NOT NULL,                -- charge | refund
        period      TEXT NOT NULL,                -- the UTC day the charge counts against
        created_at  TEXT NOT NULL
    );
    CREATE INDEX ledger_by_user_period ON ledger(user_id, period);
    CREATE UNIQUE INDEX one_refund_per_job ON ledger(job_id) WHERE reason = 'refund';
    """),
]
