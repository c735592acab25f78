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
    ("0004_preferences", """
    CREATE TABLE preferences (
        user_id     INTEGER PRIMARY KEY,          -- the Discord user id (may have no job yet)
        model       TEXT,                         -- NULL: the server's default model
        stylize     INTEGER,                      -- NULL: 100, the catalog's guidance
        quality     REAL,                         -- NULL: 1, the catalog's steps
        variation   TEXT NOT NULL DEFAULT 'strong', -- what V1-V4 do: subtle | strong
        remix       INTEGER NOT NULL DEFAULT 0,   -- 1: V and reroll open the prompt to edit first
        private     INTEGER NOT NULL DEFAULT 0,   -- 1: job replies only the user sees
        suffix      TEXT NOT NULL DEFAULT ''      -- /prefer suffix, appended to every prompt
    );
    CREATE TABLE custom_options (
        user_id     INTEGER NOT NULL,
        name        TEXT NOT NULL,                -- `--name` in a prompt
        value       TEXT NOT NULL,                -- the parameters it stands for
        PRIMARY KEY (user_id, name)
    );
    """),
    ("0005_queue_quotas", """
    ALTER TABLE users ADD COLUMN mode TEXT NOT NULL DEFAULT 'fast';  -- fast | relax (/fast, /relax)
    ALTER TABLE users ADD COLUMN allowance INTEGER;                  -- /quota set; NULL: role tier or default
    ALTER TABLE jobs ADD COLUMN lane TEXT NOT NULL DEFAULT 'fast';   -- fast | relax: the queue lane it runs in
    ALTER TABLE jobs ADD COLUMN pruned_at TEXT;                      -- when retention removed its image files
    CREATE INDEX jobs_by_owner_status ON jobs(owner_id, status);
    CREATE TABLE quota_tiers (                                       -- /quota tier: images a period per role
        guild_id    INTEGER NOT NULL,
        role_id     INTEGER NOT NULL,
        images      INTEGER NOT NULL,
        PRIMARY KEY (guild_id, role_id)
    );
    -- The ledger also takes admin grants and resets, which belong to no job: job_id becomes optional.
    CREATE TABLE ledger_v2 (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id     INTEGER NOT NULL REFERENCES users(id),
        job_id      INTEGER REFERENCES jobs(id),  -- NULL for grant | reset
        amount      INTEGER NOT NULL,             -- images: + charged, - refunded, granted or reset
        reason      TEXT NOT NULL,                -- charge | refund | grant | reset
        period      TEXT NOT NULL,                -- the quota period it counts against (its first UTC day)
        created_at  TEXT NOT NULL
    );
    INSERT INTO ledger_v2 SELECT id, user_id, job_id, amount, reason, period, created_at FROM ledger;
    DROP TABLE ledger;
    ALTER TABLE ledger_v2 RENAME TO ledger;
    CREATE INDEX ledger_by_user_period ON ledger(user_id, period);
    CREATE UNIQUE INDEX one_refund_per_job ON ledger(job_id) WHERE reason = 'refund';
    """),
    ("0006_admin_audit_bans_words", """
    CREATE TABLE guild_settings (
        guild_id        INTEGER PRIMARY KEY,      -- 0 for direct messages
        default_model   TEXT,                     -- /model use; NULL: the catalog's default
        nsfw            TEXT,                     -- /moderation nsfw: spoiler | refuse; NULL: spoiler
        nsfw_age_restricted INTEGER NOT NULL DEFAULT 0  -- 1: shown as is in age-restricted channels
    );
    CREATE TABLE nsfw_images (                    -- images the model's safety checker flagged
        job_id  INTEGER NOT NULL REFERENCES jobs(id),
        idx     INTEGER NOT NULL,
        PRIMARY KEY (job_id, idx)
    );
    CREATE TABLE bans (
        guild_id    INTEGER NOT NULL,
        user_id     INTEGER NOT NULL,
        banned_by   INTEGER NOT NULL,
        reason      TEXT NOT NULL DEFAULT '',
        created_at  TEXT NOT NULL,
        PRIMARY KEY (guild_id, user_id)
    );
    CREATE TABLE banned_words (
        guild_id    INTEGER NOT NULL,
        word        TEXT NOT NULL,                -- lower case; matched on word boundaries
        added_by    INTEGER NOT NULL,
        created_at  TEXT NOT NULL,
        PRIMARY KEY (guild_id, word)
    );
    CREATE TABLE audit (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        guild_id    INTEGER NOT NULL,
        user_id     INTEGER NOT NULL,             -- who
        user_name   TEXT NOT NULL,
        action      TEXT NOT NULL,                -- what: the command, e.g. "model use"
        detail      TEXT NOT NULL,                -- its arguments
        outcome     TEXT NOT NULL,                -- done | refused | failed, and why
        created_at  TEXT NOT NULL                 -- when (UTC)
    );
    CREATE INDEX audit_by_guild ON audit(guild_id, id);
    """),
    # Delivery is its own step: `done` means the images are saved, `delivered_at` that the job's message shows
    # them. Jobs finished before this migration were delivered as they finished.
    ("0007_delivery", """
    ALTER TABLE jobs ADD COLUMN delivered_at TEXT;
    UPDATE jobs SET delivered_at = finished_at WHERE status = 'done';
    """),
    ("0008_descriptions", """
    CREATE TABLE descriptions (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        owner_id    INTEGER NOT NULL,             -- the Discord user who ran /describe
        digest      TEXT NOT NULL,                -- the picture, in DATA_DIR/sources (content-addressed)
        model       TEXT NOT NULL,                -- whose describer wrote the prompts
        prompts     TEXT NOT NULL,                -- JSON: the four prompts, in the order shown
        created_at  TEXT NOT NULL
    );
    """),
    # The archive's search (bot/store/archive.py): an FTS5 index of the prompts, its content read from `jobs`
    # itself; the triggers keep it in step, and 'rebuild' indexes the jobs there already. Case and
    # diacritics are folded ("cafe" finds "café"). Negative prompts are not indexed: a word after --no is
    # what the picture does not show.
    ("0009_jobs_fts", """
    CREATE VIRTUAL TABLE jobs_fts USING fts5(
        prompt, content='jobs', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
    CREATE TRIGGER jobs_fts_insert AFTER INSERT ON jobs BEGIN
        INSERT INTO jobs_fts(rowid, prompt) VALUES (new.id, new.prompt);
    END;
    CREATE TRIGGER jobs_fts_delete AFTER DELETE ON jobs BEGIN
        INSERT INTO jobs_fts(jobs_fts, rowid, prompt) VALUES ('delete', old.id, old.prompt);
    END;
    CREATE TRIGGER jobs_fts_update AFTER UPDATE OF id, prompt ON jobs BEGIN
        INSERT INTO jobs_fts(jobs_fts, rowid, prompt) VALUES ('delete', old.id, old.prompt);
        INSERT INTO jobs_fts(rowid, prompt) VALUES (new.id, new.prompt);
    END;
    INSERT INTO jobs_fts(jobs_fts) VALUES ('rebuild');
    """),
    # Whether a job was delivered as a private (ephemeral) reply: the web archive shows other members only the
    # public jobs of the servers they share (bot/store/archive.py). Recorded from the owner's /settings when
    # the job is accepted; jobs from before this step take their owner's setting as it is now.
    ("0010_jobs_private", """
    ALTER TABLE jobs ADD COLUMN private INTEGER NOT NULL DEFAULT 0;  -- 1: its replies were only its owner's
    UPDATE jobs SET private = 1 WHERE owner_id IN (SELECT user_id FROM preferences WHERE private = 1);
    CREATE INDEX jobs_by_guild ON jobs(guild_id, id);
    """),
    ("0011_web_logouts", """
    -- Web sessions ended by logout before they expire: a kept copy of the cookie stays refused after a restart.
    CREATE TABLE web_logouts (
        session_id TEXT PRIMARY KEY,
        expires_at TEXT NOT NULL
    );
    """),
]
