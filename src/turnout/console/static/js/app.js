// The console's shell: who is signed in, which page the address names, and the polling
// loop that keeps the page live (and keeps trying while the server restarts).

import { ApiError, Halted, Unreachable, halt, request, setCsrf } from "./api.js";
import { replace, h } from "./dom.js";
import * as deployment from "./deployment.js";
import * as jobs from "./jobs.js";
import * as models from "./models.js";
import * as overview from "./overview.js";

const main = document.getElementById("main");
const statusBar = document.getElementById("status");
let current = null;
let generation = 0;
let running = Promise.resolve();

function parseRoute() {
  const [path, query = ""] = (location.hash.replace(/^#/, "") || "/").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = { query: new URLSearchParams(query) };
  if (parts[0] === "deployments" && parts[1]) return [deployment, { ...params, name: parts[1] }, "nav-deployments"];
  if (parts[0] === "models") return [models, { ...params, name: parts[1] }, "nav-models"];
  if (parts[0] === "jobs") return [jobs, { ...params, id: parts[1] }, "nav-jobs"];
  return [overview, params, "nav-deployments"];
}

export function setStatus(text) {
  if (statusBar.textContent !== text) statusBar.textContent = text;
}

export function confirmAction(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

function describe(error) {
  if (error instanceof Unreachable) return "The server does not answer; trying again…";
  if (error instanceof ApiError) return error.message;
  return `Unexpected error: ${error && error.message ? error.message : error}`;
}

async function poll(mine) {
  if (mine !== generation || current === null) return;
  try {
    running = current.refresh();
    await running;
    setStatus("");
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
  } catch (error) {
    if (error instanceof Halted) return;
    if (!(error instanceof ApiError && error.status === 401)) setStatus(describe(error));
  }
  if (mine === generation) setTimeout(() => poll(mine), current.interval_ms || 5000);
}

function show() {
  const [view, params, navId] = parseRoute();
  if (current && current.destroy) current.destroy();
  generation += 1;
  for (const link of document.querySelectorAll(".top nav a")) {
    if (link.id === navId) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  replace(main, h("p", { className: "muted" }, "Loading…"));
  current = view.mount(main, { session, confirmAction, setStatus }, params);
  const what = params.name || (params.id ? `job ${params.id}` : document.getElementById(navId).textContent);
  document.title = `${what} · turnout`;
  if (navigated) main.focus({ preventScroll: true }); // screen readers start at the new page
  navigated = true;
  poll(generation);
}

let navigated = false;

let session = null;

async function start() {
  let answer;
  for (;;) {
    try {
      answer = await request("/ui/session");
      break;
    } catch (error) {
      if (error instanceof ApiError) return; // 401: on its way to the sign-in page
      setStatus(describe(error));
      await new Promise((resolve) => setTimeout(resolve, 3000));
    }
  }
  session = answer.data;
  setCsrf(session.csrf);
  replace(document.getElementById("who"), `${session.name} (${session.role})`);
  document.getElementById("sign-out").addEventListener("click", async () => {
    generation += 1; // no more polls; the one under way finishes before the session ends
    await running.catch(() => null);
    try {
      await request("/ui/sign-out", { method: "POST" });
    } finally {
      halt();
      location.assign("/ui/sign-in");
    }
  });
  window.addEventListener("hashchange", show);
  show();
}

start();
