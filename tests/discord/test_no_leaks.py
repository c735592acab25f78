"""What the bot shows and logs leaks nothing of the server: no local file paths in a failed job's public
message, no interaction token (a 15-minute credential) in any log record."""

from __future__ import annotations

import logging
import re


async def test_a_failed_jobs_message_shows_no_server_paths(dreamgrid, models_dir, tmp_path):
    alice = dreamgrid.discord.add_user("alice")
    dreamgrid.app.jobs.policy.default_model = "broken"  # its UNet weights are corrupt: the load raises

    ix = await dreamgrid.discord.slash(alice, "imagine", {"prompt": "a doomed picture"})
    message = await ix.wait_original(lambda m: "failed" in m.content, timeout=60)

    (job,) = await dreamgrid.app.store.recent_jobs(alice.id)
    assert "❌" in message.content and job.status == "failed"
    assert "…/diffusion_pytorch_model.safetensors" in message.content  # the file's name still says which
    for shown in (message.content, job.error):
        assert str(models_dir) not in shown and str(tmp_path) not in shown
        assert not re.search(r"(?<![\w.])/[^\s/'\"]+/", shown), shown  # no absolute path at all


async def test_no_interaction_token_reaches_the_logs(dreamgrid, caplog):
    from bot.logs import RedactSecrets

    caplog.handler.addFilter(RedactSecrets([dreamgrid.settings.discord_token]))  # as `dreamgrid run` installs it
    caplog.set_level(logging.DEBUG)  # discord.py's HTTP and gateway lines, with every URL and payload
    alice = dreamgrid.discord.add_user("alice")
    ix, grid = await dreamgrid.grid(alice, "a secret garden")
    job_id = int(grid.content.rsplit("job #", 1)[1])
    click, _ = await dreamgrid.click(alice, grid, f"dg:upscale:{job_id}:1")

    logged = [record.getMessage() + (record.exc_text or "") for record in caplog.records]
    assert any(f"/interactions/{ix.id}/[redacted]/callback" in line for line in logged)  # the answer, logged
    assert any("/webhooks/" in line and "/[redacted]/messages/" in line for line in logged)  # the edits
    for token in (ix.token, click.token):
        assert not [line for line in logged if token in line]
