"""The operators' status page: the queue by lane and by member (waiting and running), the devices with their
loaded models and memory, jobs done and failed per hour over the last 24 hours, and the 10 most recent
failures with the reason their members were told (never a file path). The page refreshes itself from
/api/status every few seconds. Read through the service's facades only (`Admin.status`).

Who sees it: admins everywhere only (ADMIN_USER_IDS; without login, whoever opens it is on the bot's own
machine and counts as one); anyone else gets a 403 (bot/web/auth.py's `require_admin`).
"""

from __future__ import annotations

from aiohttp import web

from bot.service import Admin
from bot.web.auth import require_admin
from bot.web.pages import page


def status_routes(admin: Admin) -> list[web.RouteDef]:
    async def status_page(request: web.Request) -> web.FileResponse:
        require_admin(request)
        return page("status.html")

    async def report(request: web.Request) -> web.Response:
        require_admin(request)
        status = await admin.status()
        return web.json_response({
            "queue": {"waiting": status.waiting, "lanes": status.lanes, "users": status.users},
            "devices": [{"device": device.device, "weight_bytes": device.weight_bytes,
                         "allocated_bytes": device.allocated_bytes,
                         "models": [{"name": state.name, "weight_bytes": state.weight_bytes,
                                     "load_seconds": round(state.seconds, 2)} for state in device.models]}
                        for device in status.devices],
            "process_rss": status.process_rss,
            "hours": status.hours,
            "failures": [{"id": failure["id"], "kind": failure["kind"], "model": failure["model"],
                          "error": failure["error"] or "", "finished_at": failure["finished_at"]}
                         for failure in status.failures],
        }, headers={"Cache-Control": "no-store"})

    return [web.get("/status", status_page), web.get("/api/status", report)]
