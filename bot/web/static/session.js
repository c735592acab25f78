// Who is looking (GET /api/session), and POSTs that carry the session's CSRF token: every page that
// changes something sends its requests through `post`. With login with Discord on, a 401 (no session, or it
// expired) sends the browser to the login page, and back here after it.
let current = null;

function toLogin() {
  const back = location.pathname + location.search;
  location.assign(`/sign-in?next=${encodeURIComponent(back)}`);
}

export async function session() {
  if (!current) {
    const response = await fetch("/api/session", {credentials: "same-origin"});
    if (response.status === 401) toLogin();
    if (!response.ok) throw new Error(`the session could not be read (${response.status})`);
    current = await response.json();
  }
  return current;
}

export async function post(url, body) {
  const {csrf} = await session();
  const init = {method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": csrf}};
  if (body instanceof Blob || body instanceof FormData) init.body = body;
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const response = await fetch(url, init);
  if (response.status === 401) toLogin();
  return response;
}
