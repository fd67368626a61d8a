// Calls to the management API with the session cookie (the browser sends it; scripts never
// see it) and the session's CSRF token on every change.

let csrf = "";
let halted = false;

export function setCsrf(token) {
  csrf = token;
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export class Unreachable extends Error {}

export class Halted extends Error {}

// No more API calls from this page (it is signing out).
export function halt() {
  halted = true;
}

export async function request(url, { method = "GET", body } = {}) {
  if (halted) throw new Halted("signing out");
  const headers = { accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["x-csrf-token"] = csrf;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new Unreachable("the server does not answer");
  }
  if (response.status === 401) {
    location.assign("/ui/sign-in");
    throw new ApiError(401, "signed out");
  }
  if (response.status === 502 || response.status === 503 || response.status === 504) {
    throw new Unreachable(`the server answered ${response.status}`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!response.ok) {
    throw new ApiError(response.status, (data && data.error) || response.statusText);
  }
  return { data, headers: response.headers };
}

export async function api(path, options) {
  return (await request(`/api/v1${path}`, options)).data;
}

export function enc(name) {
  return encodeURIComponent(name);
}
