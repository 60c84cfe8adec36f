// The Satchel admin console: one ES module, no framework, no build step,
// nothing loaded from another origin.
//
// Sign-in: POST /auth/login (the Directus route, mode "json") gives an
// access token and a refresh token. They live in sessionStorage (this tab
// only, gone when it closes) and go out as "Authorization: Bearer", never
// as a cookie - so no other site can make this browser send them (no CSRF),
// and the Backpack API key is never in the page. Every call is to the admin
// API under /_/api; the change stream is the /_/api/live websocket, whose
// first message carries the token.

const STORE = window.sessionStorage;
const app = document.getElementById("app");
const nav = document.getElementById("nav");

// -- tiny DOM helpers -----------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "value") el.value = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function show(...nodes) { app.replaceChildren(...nodes); }
function json(value) { return JSON.stringify(value, null, 2); }
function short(value, max = 160) {
  const text = JSON.stringify(value);
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}
function errorLine() { return h("div", { class: "error", role: "alert" }); }
function fail(line, error) { line.textContent = error.message || String(error); }

// -- the API --------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const first = body && body.errors && body.errors[0];
    super(first ? first.message : `HTTP ${status}`);
    this.status = status;
    this.code = first && first.extensions ? first.extensions.code : undefined;
  }
}

const tokens = {
  get access() { return STORE.getItem("satchel.access"); },
  get refresh() { return STORE.getItem("satchel.refresh"); },
  set(data) {
    STORE.setItem("satchel.access", data.access_token);
    STORE.setItem("satchel.refresh", data.refresh_token);
  },
  clear() { STORE.removeItem("satchel.access"); STORE.removeItem("satchel.refresh"); },
};

async function request(method, path, body, { auth = true, raw = false, text = false } = {}) {
  const headers = {};
  if (auth && tokens.access) headers.Authorization = `Bearer ${tokens.access}`;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = text ? body : JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload, credentials: "omit" });
  if (raw && response.ok) return response;
  const answer = await response.text();
  const parsed = answer ? JSON.parse(answer) : null;
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

async function refreshed() {
  if (!tokens.refresh) return false;
  try {
    const answer = await request("POST", "/auth/refresh", { refresh_token: tokens.refresh, mode: "json" },
                                 { auth: false });
    tokens.set(answer.data);
    return true;
  } catch {
    return false;
  }
}

// An admin API call; an expired access token is refreshed once.
async function api(method, path, body, options) {
  try {
    return await request(method, path, body, options);
  } catch (error) {
    if (error.status === 401 && await refreshed()) return request(method, path, body, options);
    if (error.status === 401) { signOut(); }
    throw error;
  }
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== "" && value !== undefined) search.set(key, value);
  const text = search.toString();
  return text ? `?${text}` : "";
}

// -- first run, sign-in, sign-out --------------------------------------------------

function setupPage(token) {
  const error = errorLine();
  const form = h("form", { class: "card narrow", id: "setup-form", onsubmit: async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    try {
      await request("POST", "/_/api/setup", data, { auth: false });
      history.replaceState(null, "", "/_/");
      signInPage(data.email, "The administrator was created. Sign in.");
    } catch (e) { fail(error, e); }
  } },
    h("h2", {}, "Create the first administrator"),
    h("p", { class: "muted" }, "The setup token was printed in the server's log when it started."),
    h("label", { for: "setup-token" }, "Setup token"),
    h("input", { id: "setup-token", name: "token", value: token, required: true, autocomplete: "off" }),
    h("label", { for: "setup-email" }, "Email"),
    h("input", { id: "setup-email", name: "email", type: "email", required: true, autocomplete: "username" }),
    h("label", { for: "setup-password" }, "Password (8 characters or more)"),
    h("input", { id: "setup-password", name: "password", type: "password", minlength: 8, required: true,
                 autocomplete: "new-password" }),
    error,
    h("button", { class: "primary", type: "submit", id: "setup-submit" }, "Create administrator"));
  show(form);
}

function signInPage(email = "", note = "", setupOpen = false, refusal = "") {
  nav.hidden = true;
  document.getElementById("signout").hidden = true;
  document.getElementById("who").textContent = "";
  const error = errorLine();
  error.textContent = refusal;
  const form = h("form", { class: "card narrow", id: "signin-form", onsubmit: async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    try {
      const answer = await request("POST", "/auth/login", { ...data, mode: "json" }, { auth: false });
      tokens.set(answer.data);
      await start();
    } catch (e) { fail(error, e); }
  } },
    h("h2", {}, "Sign in"),
    note ? h("p", { class: "ok" }, note) : null,
    setupOpen ? h("p", { class: "muted" }, "No administrator exists yet: open the setup URL the server printed ",
                  "in its log (/_/#setup=...), or run ", h("code", {}, "satchel admin create EMAIL"), ".") : null,
    h("label", { for: "signin-email" }, "Email"),
    h("input", { id: "signin-email", name: "email", type: "email", value: email, required: true,
                 autocomplete: "username" }),
    h("label", { for: "signin-password" }, "Password"),
    h("input", { id: "signin-password", name: "password", type: "password", required: true,
                 autocomplete: "current-password" }),
    error,
    h("button", { class: "primary", type: "submit", id: "signin-submit" }, "Sign in"));
  show(form);
}

// Both tokens are revoked: the refresh token in the body, the access token
// as the Bearer (a copy of it elsewhere stops working, and the server closes
// a change stream it opened at its next re-check).
function signOut() {
  const refresh = tokens.refresh;
  const access = tokens.access;
  tokens.clear();
  live.close();
  if (refresh) {
    fetch("/auth/logout", { method: "POST", credentials: "omit", body: JSON.stringify({ refresh_token: refresh }),
                            headers: { "Content-Type": "application/json", ...(access ? { Authorization: `Bearer ${access}` } : {}) } })
      .catch(() => {});
  }
  signInPage();
}
document.getElementById("signout").addEventListener("click", signOut);

// -- the live view: the change stream and the connection counts ---------------------

const live = {
  socket: null,
  changes: [],
  listeners: new Set(),
  open() {
    if (this.socket) return;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/_/api/live`;
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.addEventListener("open", () => socket.send(JSON.stringify({ type: "auth", access_token: tokens.access })));
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "auth" || message.type === "pong") return;
      this.changes.unshift({ at: new Date(), message });
      this.changes.length = Math.min(this.changes.length, 200);
      for (const listener of this.listeners) listener(message);
    });
    socket.addEventListener("close", (event) => {
      if (this.socket === socket) this.socket = null;
      if (!tokens.access) return;  // signed out here
      // 4403: no longer an administrator. 4401: the session ended (the access
      // token expired - refresh it - or was revoked: then the refresh fails
      // too and this tab signs out). Anything else (a server restart):
      // reconnect after a pause.
      if (event.code === 4403) { signOut(); return; }
      setTimeout(async () => {
        if (!tokens.access) return;
        if (await refreshed()) this.open();
        else if (event.code === 4401) signOut();
      }, event.code === 4401 ? 0 : 2000);
    });
  },
  close() { if (this.socket) { const s = this.socket; this.socket = null; s.close(); } },
};

function describe(message) {
  if (message.type === "change") {
    return `${message.kind} ${message.collection}/${message.id} via ${message.origin}` +
      (message.record && !message.truncated ? ` ${short(message.record, 120)}` : "");
  }
  if (message.type === "entry") return `${message.kind} ${message.space} ${message.id} via ${message.origin}`;
  if (message.type === "document") return `document ${message.read_token} r${message.revision} via ${message.origin}`;
  return short(message);
}

let stopView = () => {};

function overview() {
  const counts = h("div", { class: "stats", id: "connections" });
  const list = h("ul", { id: "changes" });
  const render = () => list.replaceChildren(...live.changes.map(({ at, message }) =>
    h("li", {}, h("span", { class: "muted" }, at.toLocaleTimeString(), " "), describe(message))));
  const poll = async () => {
    try {
      const { data } = await api("GET", "/_/api/stats");
      counts.replaceChildren(...Object.entries(data.connections).map(([name, n]) =>
        h("div", { class: "card", "data-mount": name }, h("div", { class: "muted" }, name),
          h("div", { class: "big" }, n))));
    } catch { /* shown at the next poll */ }
  };
  poll();
  const timer = setInterval(poll, 1000);
  live.listeners.add(render);
  render();
  stopView = () => { clearInterval(timer); live.listeners.delete(render); };
  show(h("h2", {}, "Overview"), h("h3", {}, "Open connections per protocol"), counts,
       h("h3", {}, "Changes, as they are committed (every protocol)"), h("div", { class: "card" }, list));
}

// -- collections and records ----------------------------------------------------------

function pager(state, reload, count) {
  return h("div", { class: "row" },
    h("button", { disabled: state.offset === 0, onclick: () => { state.offset = Math.max(0, state.offset - state.limit); reload(); } }, "‹ Previous"),
    h("span", { class: "muted" }, count === undefined ? `from ${state.offset + 1}` :
      `${count === 0 ? 0 : state.offset + 1}-${Math.min(state.offset + state.limit, count)} of ${count}`),
    h("button", { disabled: count !== undefined ? state.offset + state.limit >= count : state.more === false,
                  onclick: () => { state.offset += state.limit; reload(); } }, "Next ›"));
}

function searchBox(state, reload, placeholder) {
  const input = h("input", { type: "search", placeholder, value: state.search, class: "search" });
  input.addEventListener("change", () => { state.search = input.value; state.offset = 0; reload(); });
  return input;
}

async function collectionsView(selected) {
  const error = errorLine();
  const side = h("div", { class: "card list", id: "collection-list" });
  const body = h("div", {});
  const newName = h("input", { id: "new-collection", placeholder: "new collection name" });
  show(h("h2", {}, "Collections"), error, h("div", { class: "cols" },
    h("div", {}, side, h("div", { class: "card" }, h("label", { for: "new-collection" }, "A new collection"),
      newName, h("div", { class: "row" }, h("button", { onclick: () => newName.value && openCollection(newName.value.trim(), true) }, "Open")),
      h("p", { class: "muted" }, "A collection exists once it holds a record."))),
    body));
  let names = [];
  try { names = (await api("GET", "/_/api/collections")).data; } catch (e) { fail(error, e); }
  const openCollection = (name, writable) => {
    for (const button of side.querySelectorAll("button")) button.classList.toggle("active", button.dataset.name === name);
    recordsView(body, name, writable);
  };
  side.replaceChildren(h("div", { class: "muted" }, names.length ? "" : "No collection holds a record yet."),
    ...names.map(({ name, writable }) => h("button", { "data-name": name, onclick: () => openCollection(name, writable) },
      name, writable ? "" : " (read-only)")));
  if (selected) openCollection(selected, true);
}

function recordsView(container, collection, writable) {
  const state = { offset: 0, limit: 20, search: "" };
  const error = errorLine();
  const table = h("div", {});
  const editor = h("textarea", { id: "record-json", placeholder: '{"title": "hello"}' });
  let editing = null;
  const editorTitle = h("h3", {}, "A new record");
  const save = h("button", { class: "primary", id: "record-save", onclick: async () => {
    let value;
    try { value = JSON.parse(editor.value || "{}"); } catch (e) { return fail(error, new Error(`Not JSON: ${e.message}`)); }
    try {
      if (editing) {
        await api("PUT", `/_/api/collections/${encodeURIComponent(collection)}/records/${editing}`, value);
      } else {
        await api("POST", `/_/api/collections/${encodeURIComponent(collection)}/records`, value);
      }
      editing = null; editor.value = ""; editorTitle.textContent = "A new record"; save.textContent = "Create";
      error.textContent = "";
      await reload();
    } catch (e) { fail(error, e); }
  } }, "Create");
  const reload = async () => {
    try {
      const answer = await api("GET", `/_/api/collections/${encodeURIComponent(collection)}/records${query(state)}`);
      const rows = answer.data.map((record) => {
        const fields = Object.fromEntries(Object.entries(record).filter(([k]) => !["_id", "createdAt", "updatedAt", "__v"].includes(k)));
        return h("tr", { "data-id": record._id },
          h("td", {}, h("code", {}, record._id)), h("td", {}, h("code", {}, short(fields))),
          h("td", {}, record.updatedAt || ""),
          h("td", {}, writable ? [
            h("button", { onclick: () => { editing = record._id; editor.value = json(fields); editorTitle.textContent = `Edit ${record._id} (replaces every field)`; save.textContent = "Save"; editor.focus(); } }, "Edit"), " ",
            h("button", { class: "danger", onclick: async () => {
              if (!confirm(`Delete ${collection}/${record._id}?`)) return;
              try { await api("DELETE", `/_/api/collections/${encodeURIComponent(collection)}/records/${record._id}`); await reload(); } catch (e) { fail(error, e); }
            } }, "Delete")] : ""));
      });
      table.replaceChildren(pager(state, reload, answer.meta.filter_count),
        h("table", { id: "records" }, h("tr", {}, h("th", {}, "_id"), h("th", {}, "fields"), h("th", {}, "updated"), h("th", {}, "")), rows));
    } catch (e) { fail(error, e); }
  };
  container.replaceChildren(h("div", { class: "card" },
    h("div", { class: "row" }, h("h2", {}, collection), searchBox(state, reload, "search the records")),
    error, table,
    writable ? h("div", {}, editorTitle, editor, h("div", { class: "row" }, save,
      h("button", { onclick: () => { editing = null; editor.value = ""; editorTitle.textContent = "A new record"; save.textContent = "Create"; } }, "Clear"))) :
      h("p", { class: "muted" }, "Another protocol's own data: read-only here.")));
  reload();
}

// -- users -----------------------------------------------------------------------

async function usersView() {
  const state = { offset: 0, limit: 25, search: "" };
  const error = errorLine();
  const table = h("div", {});
  let roles = [];
  try { roles = (await api("GET", "/_/api/roles")).data.filter((r) => r.name !== "public").map((r) => r.name); } catch (e) { fail(error, e); }
  const roleSelect = (value, onchange) => {
    const select = h("select", {}, roles.map((name) => h("option", { value: name, selected: name === value }, name)));
    select.value = value;
    if (onchange) select.addEventListener("change", () => onchange(select.value));
    return select;
  };
  const act = async (fn) => { try { await fn(); error.textContent = ""; await reload(); } catch (e) { fail(error, e); } };
  const reload = async () => {
    try {
      const answer = await api("GET", `/_/api/users${query(state)}`);
      state.more = answer.data.length === state.limit;
      table.replaceChildren(pager(state, reload),
        h("table", { id: "users" }, h("tr", {}, h("th", {}, "email"), h("th", {}, "role"), h("th", {}, "created"), h("th", {}, "state"), h("th", {}, "")),
          answer.data.map((user) => h("tr", { "data-email": user.email },
            h("td", {}, user.email, h("div", { class: "muted" }, h("code", {}, user.id))),
            h("td", {}, roleSelect(user.role, (role) => act(() => api("PUT", `/_/api/users/${user.id}/role`, { role })))),
            h("td", {}, user.created_at),
            h("td", {}, h("span", { class: user.disabled ? "pill off" : "pill" }, user.disabled ? "disabled" : "active")),
            h("td", {},
              h("button", { onclick: () => act(() => api("PUT", `/_/api/users/${user.id}/disabled`, { disabled: !user.disabled })) },
                user.disabled ? "Enable" : "Disable"), " ",
              h("button", { onclick: () => {
                const password = prompt(`A new password for ${user.email} (8 characters or more). Every session it has is signed out.`);
                if (password) act(() => api("PUT", `/_/api/users/${user.id}/password`, { password }));
              } }, "Reset password"))))));
    } catch (e) { fail(error, e); }
  };
  const email = h("input", { id: "new-user-email", type: "email", placeholder: "email" });
  const password = h("input", { id: "new-user-password", type: "password", placeholder: "password (8+)", autocomplete: "new-password" });
  const role = roleSelect("authenticated");
  show(h("h2", {}, "Users"), h("div", { class: "card" },
    h("div", { class: "row" }, searchBox(state, reload, "search by email")), error, table),
    h("div", { class: "card" }, h("h3", {}, "A new user"), h("div", { class: "row" }, email, password, role,
      h("button", { class: "primary", id: "new-user-create", onclick: () => act(async () => {
        await api("POST", "/_/api/users", { email: email.value, password: password.value, role: role.value });
        email.value = ""; password.value = "";
      }) }, "Create"))));
  reload();
}

// -- files -----------------------------------------------------------------------

function filesView() {
  const state = { offset: 0, limit: 25, search: "" };
  const error = errorLine();
  const table = h("div", {});
  const reload = async () => {
    try {
      const answer = await api("GET", `/_/api/files${query(state)}`);
      table.replaceChildren(pager(state, reload, answer.meta.filter_count),
        h("table", { id: "files" }, h("tr", {}, h("th", {}, "file"), h("th", {}, "bucket"), h("th", {}, "owner"), h("th", {}, "uploaded"), h("th", {}, "")),
          answer.data.map((file) => h("tr", { "data-id": file._id },
            h("td", {}, file.filename), h("td", {}, file.bucket), h("td", {}, h("code", {}, file.userId)), h("td", {}, file.createdAt),
            h("td", {},
              h("button", { onclick: async () => {
                try {
                  const response = await api("GET", `/_/api/files/${file._id}/content`, undefined, { raw: true });
                  const url = URL.createObjectURL(await response.blob());
                  const link = h("a", { href: url, download: file.filename });
                  document.body.append(link); link.click(); link.remove();
                  setTimeout(() => URL.revokeObjectURL(url), 10000);
                } catch (e) { fail(error, e); }
              } }, "Download"), " ",
              h("button", { class: "danger", onclick: async () => {
                if (!confirm(`Delete ${file.filename}?`)) return;
                try { await api("DELETE", `/_/api/files/${file._id}`); await reload(); } catch (e) { fail(error, e); }
              } }, "Delete"))))));
    } catch (e) { fail(error, e); }
  };
  show(h("h2", {}, "Files"), h("div", { class: "card" }, h("div", { class: "row" }, searchBox(state, reload, "search files")), error, table));
  reload();
}

// -- inbox documents ------------------------------------------------------------------

function documentsView() {
  const state = { offset: 0, limit: 25 };
  const error = errorLine();
  const table = h("div", {});
  const detail = h("div", {});
  const reload = async () => {
    try {
      const answer = await api("GET", `/_/api/documents${query(state)}`);
      state.more = answer.data.length === state.limit;
      table.replaceChildren(pager(state, reload),
        h("table", { id: "documents" }, h("tr", {}, h("th", {}, "read token"), h("th", {}, "revision"), h("th", {}, "bytes"), h("th", {}, "messages")),
          answer.data.map((doc) => h("tr", {},
            h("td", {}, h("button", { onclick: () => openDocument(doc.read_token) }, h("code", {}, doc.read_token))),
            h("td", {}, doc.revision), h("td", {}, doc.bytes), h("td", {}, doc.inbox ? doc.messages : h("span", { class: "muted" }, "not an inbox"))))));
    } catch (e) { fail(error, e); }
  };
  const openDocument = async (token) => {
    try {
      const { data } = await api("GET", `/_/api/documents/${token}`);
      const messages = data.content && typeof data.content === "object" ? data.content["#messages"] : null;
      detail.replaceChildren(h("div", { class: "card" }, h("h3", {}, `Document ${token} (revision ${data.revision})`),
        messages ? h("table", {}, h("tr", {}, h("th", {}, "message id"), h("th", {}, "#"), h("th", {}, "message")),
          Object.entries(messages).map(([id, message]) => h("tr", {}, h("td", {}, h("code", {}, id)),
            h("td", {}, message && message["#"] !== undefined ? message["#"] : 0), h("td", {}, h("code", {}, short(message, 300)))))) : null,
        h("h3", {}, "Content"), h("pre", {}, json(data.content))));
    } catch (e) { fail(error, e); }
  };
  show(h("h2", {}, "Inbox documents"), h("p", { class: "muted" }, "In the order they were created. Write tokens are never stored, so they are never shown."),
    h("div", { class: "card" }, error, table), detail);
  reload();
}

// -- roles and permission rules ---------------------------------------------------------

async function rulesView() {
  const error = errorLine();
  const status = h("div", { class: "muted", id: "rules-status" });
  const editor = h("textarea", { class: "tall", id: "rules-json", spellcheck: "false" });
  const roles = h("div", {});
  let revision = 0;
  const load = async () => {
    const { data } = await api("GET", "/_/api/rules");
    revision = data.revision;
    editor.value = json(data.rules);
    status.textContent = `Revision ${data.revision}`;
    roles.replaceChildren(h("table", {}, h("tr", {}, h("th", {}, "role"), h("th", {}, "admin"), h("th", {}, "")),
      data.roles.map((r) => h("tr", {}, h("td", {}, r.name), h("td", {}, r.admin ? "yes" : ""), h("td", { class: "muted" }, r.builtin ? "built in" : "")))));
  };
  const save = h("button", { class: "primary", id: "rules-save", onclick: async () => {
    let rules;
    try { rules = JSON.parse(editor.value); } catch (e) { return fail(error, new Error(`Not JSON: ${e.message}`)); }
    try {
      const { data } = await api("PUT", "/_/api/rules", { revision, rules });
      error.textContent = "";
      await load();
      status.textContent = `Saved: revision ${data.revision}. Every protocol follows it from the next message.`;
    } catch (e) { fail(error, e); }
  } }, "Save the rules");
  show(h("h2", {}, "Roles and permission rules"),
    h("p", { class: "muted" }, "One rule file for every protocol: roles, and per role x collection x action an item filter in the Directus filter syntax. ",
      "A save replaces the rules by compare-and-swap on their revision."),
    h("div", { class: "cols" }, h("div", { class: "card" }, h("h3", {}, "Roles"), roles),
      h("div", { class: "card" }, status, editor, error, h("div", { class: "row" }, save, h("button", { onclick: () => load() }, "Reload")))));
  try { await load(); } catch (e) { fail(error, e); }
}

// -- the key-value store and live config --------------------------------------------------

function entriesView() {
  const state = { space: "kvStore", organization: "", project: "", after: "" };
  const error = errorLine();
  const table = h("div", {});
  const space = h("select", { id: "entry-space" }, h("option", { value: "kvStore" }, "kvStore"), h("option", { value: "liveConfig" }, "liveConfig"));
  const organization = h("input", { placeholder: "x-m2-organization" });
  const project = h("input", { placeholder: "x-m2-project" });
  const id = h("input", { id: "entry-id", placeholder: "id" });
  const value = h("textarea", { id: "entry-value", placeholder: '{"any": "JSON value"}' });
  const scope = () => query({ organization: state.organization, project: state.project });
  const reload = async () => {
    Object.assign(state, { space: space.value, organization: organization.value.trim(), project: project.value.trim() });
    try {
      const { data } = await api("GET", `/_/api/entries/${state.space}${query({ organization: state.organization, project: state.project, after: state.after })}`);
      table.replaceChildren(h("table", { id: "entries" }, h("tr", {}, h("th", {}, "id"), h("th", {}, "value"), h("th", {}, "version"), h("th", {}, "")),
        data.entries.map((entry) => h("tr", {}, h("td", {}, h("code", {}, entry.id)), h("td", {}, h("code", {}, short(entry.value, 200))),
          h("td", {}, new Date(entry.version).toISOString()),
          h("td", {}, h("button", { onclick: () => { id.value = entry.id; value.value = json(entry.value); } }, "Edit"), " ",
            h("button", { class: "danger", onclick: async () => {
              try { await api("DELETE", `/_/api/entries/${state.space}/${encodeURIComponent(entry.id)}${scope()}`); await reload(); } catch (e) { fail(error, e); }
            } }, "Delete"))))),
        // replaceChildren, unlike h(), would show a null as the text "null".
        data.next ? h("button", { onclick: () => { state.after = data.next; reload(); } }, "Next ›") : "");
    } catch (e) { fail(error, e); }
  };
  for (const input of [space, organization, project]) input.addEventListener("change", () => { state.after = ""; reload(); });
  show(h("h2", {}, "Key-value store and live config"),
    h("div", { class: "card" }, h("div", { class: "row" }, space, organization, project), error, table),
    h("div", { class: "card" }, h("h3", {}, "Write an entry"), id, value, h("div", { class: "row" },
      h("button", { class: "primary", id: "entry-save", onclick: async () => {
        try {
          await api("PUT", `/_/api/entries/${state.space}/${encodeURIComponent(id.value)}${scope()}`, value.value || "null", { text: true });
          error.textContent = ""; await reload();
        } catch (e) { fail(error, e); }
      } }, "Save"))));
  reload();
}

// -- the shell ----------------------------------------------------------------------

const VIEWS = {
  overview: ["Overview", overview],
  collections: ["Collections", collectionsView],
  users: ["Users", usersView],
  files: ["Files", filesView],
  documents: ["Documents", documentsView],
  rules: ["Rules", rulesView],
  entries: ["KV & config", entriesView],
};

function go(name) {
  stopView();
  stopView = () => {};
  for (const button of nav.querySelectorAll("button")) button.classList.toggle("active", button.dataset.view === name);
  history.replaceState(null, "", `/_/#${name}`);
  VIEWS[name][1]();
}

async function start() {
  let me;
  try {
    me = (await api("GET", "/_/api/me")).data;
  } catch (error) {
    tokens.clear();
    return signInPage("", "");
  }
  if (!me.admin) {
    tokens.clear();
    return signInPage(me.email, "", false, `${me.email} is not an administrator: the console is for accounts with the role admin.`);
  }
  document.getElementById("who").textContent = me.email;
  document.getElementById("signout").hidden = false;
  nav.replaceChildren(...Object.entries(VIEWS).map(([name, [title]]) =>
    h("button", { "data-view": name, onclick: () => go(name) }, title)));
  nav.hidden = false;
  live.open();
  const wanted = location.hash.slice(1);
  go(VIEWS[wanted] ? wanted : "overview");
}

async function boot() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const setupToken = hash.get("setup");
  let open = false;
  try { open = (await request("GET", "/_/api/setup", undefined, { auth: false })).data.open; } catch { /* closed */ }
  if (setupToken !== null && open) return setupPage(setupToken);
  if (tokens.access) return start();
  signInPage("", setupToken !== null ? "Setup is done: an administrator exists. Sign in." : "", open);
}

boot();
// The setup URL pasted into a tab that shows the console already changes only
// the fragment: no page load, so boot again (the views' own "#name" are set
// with replaceState, which fires no hashchange).
window.addEventListener("hashchange", () => { stopView(); stopView = () => {}; boot(); });
