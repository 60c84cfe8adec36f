// The Backpack SDK for browsers, as documented in seed 000, served by Satchel
// at /sdk.js (a classic script defining the global `createSdk`) and at
// /sdk.mjs (an ES module exporting it). It differs from the original bundle
// where that one was broken: it defines `createSdk` for pages to call, ws()
// opens the server's websocket (not the API key as a URL), and a failed call
// rejects with an Error carrying the server's own message and status.

function createSdk(url, apiKey) {
  const base = String(url).replace(/\/+$/, "");

  function endpoint(path) {
    return base + "/" + String(path).replace(/^\/+/, "");
  }

  async function failure(response) {
    let message = response.statusText || "HTTP " + response.status;
    try {
      const body = await response.clone().json();
      if (body && typeof body.message === "string") message = body.message;
    } catch (ignored) {
      // Not JSON: keep the status text.
    }
    const error = new Error(message);
    error.status = response.status;
    error.response = response;
    return error;
  }

  async function send(path, method = "GET", body = undefined, asJson = true) {
    const options = { method, headers: { authorization: "key " + apiKey }, credentials: "include" };
    if (body !== undefined) {
      if (typeof FormData !== "undefined" && body instanceof FormData) {
        options.body = body; // the browser sets the multipart boundary
      } else {
        options.headers["content-type"] = "application/json";
        options.body = JSON.stringify(typeof body === "object" ? body : { data: body });
      }
    }
    const response = await fetch(endpoint(path), options);
    if (!response.ok) throw await failure(response);
    return asJson ? response.json() : response;
  }

  function form(fields) {
    const data = new FormData();
    for (const [name, value] of fields) {
      if (value !== undefined && value !== null) data.append(name, value);
    }
    return data;
  }

  const enc = encodeURIComponent;

  const auth = {
    register: (email, password) => send("/register", "POST", { email, password }),
    login: (email, password) => send("/login", "POST", { email, password }),
    logout: () => send("/logout", "POST"),
  };

  const db = {
    getCollectionsList: () => send("/collections"),
    createNewCollection: (collectionName) => send("/collections", "POST", { collectionName }),
    getCollection: (collection) => send("/" + enc(collection)),
    getResource: (collection, id) => send("/" + enc(collection) + "/" + enc(id)),
    createResource: (collection, data) => send("/" + enc(collection), "POST", data),
    updateResource: (collection, id, data) => send("/" + enc(collection) + "/" + enc(id), "PATCH", data),
    overwriteResource: (collection, id, data) => send("/" + enc(collection) + "/" + enc(id), "PUT", data),
    deleteResource: (collection, id) => send("/" + enc(collection) + "/" + enc(id), "DELETE"),
  };
  // Seed 000 documents both spellings.
  db.getCollectionList = db.getCollectionsList;

  const storage = {
    getFile: (userId, filename) => send("/uploads/" + enc(userId) + "/" + enc(filename), "GET", undefined, false),
    getListOfUserFiles: (userId) => send("/uploads/" + enc(userId)),
    uploadFile: (file, filename, bucket) =>
      send("/uploads", "POST", form([["bucket", bucket], ["filename", filename], ["file", file]])),
    updateFile: (currentFilename, newFilename, bucket) =>
      send("/uploads/" + enc(currentFilename), "PATCH", form([["filename", newFilename], ["bucket", bucket]])),
    overwriteFile: (file, filename) =>
      send("/uploads/" + enc(filename), "PUT", form([["filename", filename], ["file", file]])),
    deleteFile: (filename) => send("/uploads/" + enc(filename), "DELETE"),
  };
  // Seed 000's example spells it updateFil.
  storage.updateFil = storage.updateFile;

  function actionsFor(socket) {
    const post = (message) => socket.send(JSON.stringify(message));
    const relay = (action) => (message = {}) => post({ ...message, action });
    return {
      findResource: (collection, query = {}) => post({ action: "find", collection, query }),
      getCollection: (collection) => post({ action: "getAll", collection }),
      getResource: (collection, id) => post({ action: "getOne", collection, id }),
      createResource: (collection, data) => post({ action: "create", collection, data }),
      overwriteResource: (collection, id, data) => post({ action: "update", collection, id, data }),
      updateResource: (collection, id, data) => post({ action: "patch", collection, id, data }),
      deleteResource: (collection, id) => post({ action: "delete", collection, id }),
      broadcast: relay("broadcast"),
      sendMessage: relay("broadcast"),
      open: relay("open"),
      close: relay("close"),
      joinUsersChannels: (usersInformationCollection) => post({ action: "joinUsersChannels", usersInformationCollection }),
      createChannel: (usersInformationCollection, channelType, name) =>
        post({ action: "createChannel", usersInformationCollection, channelType, name }),
      joinChannel: (usersInformationCollection, channelType, channelId) =>
        post({ action: "joinChannel", usersInformationCollection, channelType, channelId }),
      leaveChannel: (usersInformationCollection, channelType, channelId) =>
        post({ action: "leaveChannel", usersInformationCollection, channelType, channelId }),
      changeChannel: (usersInformationCollection, channelType, channelId) =>
        post({ action: "changeChannel", usersInformationCollection, channelType, channelId }),
      deleteChannel: (usersInformationCollection, channelMessagesCollection, channelType, channelId) =>
        post({ action: "deleteChannel", usersInformationCollection, channelMessagesCollection, channelType, channelId }),
    };
  }

  // The websocket shares the API's host and port; the browser sends the
  // session cookie set by auth.login() with the upgrade.
  function ws() {
    const socket = new WebSocket(base.replace(/^http/, "ws") + "/");
    socket.actions = actionsFor(socket);
    return socket;
  }

  return { auth, db, storage, ws };
}
