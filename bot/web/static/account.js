// Who is logged in, and a Log out button, in the page's header: only with login with Discord on (without
// it, whoever opens the page is the bot's local admin, and there is nothing to log out of).
import {post, session} from "/static/session.js";

const me = await session();
if (me.login) {
  const bar = document.createElement("div");
  bar.id = "account";
  bar.style.cssText = "display:flex;gap:.5rem;align-items:center;margin-left:auto;font-size:.9rem";
  const name = document.createElement("span");
  name.textContent = `${me.user.name}${me.admin ? " (admin)" : ""}`;
  const out = document.createElement("button");
  out.type = "button";
  out.id = "logout";
  out.textContent = "Log out";
  out.addEventListener("click", async () => {
    const response = await post("/logout");
    if (response.ok) location.assign((await response.json()).next || "/sign-in");
  });
  bar.append(name, out);
  (document.querySelector("header") || document.body).append(bar);
}
