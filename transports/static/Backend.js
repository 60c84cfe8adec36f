// Backend.js - the browser client of Satchel's inbox documents (seed 001),
// served by the server at /backend/Backend.js (a classic script defining the
// global `Backend`) and at /backend/Backend.mjs (the same code as an ES
// module: `import { Backend } from ".../backend/Backend.mjs"`, also the
// default export). No API key: the tokens are the authorization.
//
// Every call is one XMLHttpRequest. Callbacks are optional, are called
// exactly once and always asynchronously, and receive that XMLHttpRequest as
// `request` (its status, responseText, getResponseHeader("Revision")...).
// errorCode is the HTTP status of a failed answer, or 0 when no answer came
// (network failure, CORS refusal, timeout, abort).
//
//   const backend = new Backend(url)
//       url: the server, either its origin ("https://example.com", or a base
//       path "https://example.com/satchel") or, as in the original, the
//       backend path itself ("https://example.com/backend"); both mean that
//       requests go to URL/backend/documents/... . Without url: the server
//       this script was loaded from (when loaded as .../backend/Backend.js or
//       Backend.mjs), else the page's own origin.
//   backend.url        the resolved base, e.g. "https://example.com/backend"
//   backend.timeout    milliseconds before a request gives up (onError(0)); 0 = never
//
//   backend.randomMessageId() -> 16 lowercase hex digits (crypto.getRandomValues)
//   backend.randomToken()     -> 32 lowercase hex digits: a new read or write token
//       (also Backend.randomMessageId() and Backend.randomToken())
//
//   backend.readDocument(readToken, onDone, onError[, ifNewerThan, onNotNewer])
//       GET /backend/documents/READTOKEN
//       onDone(data, revision, request): data is the parsed JSON document,
//       revision the number in its Revision header. With ifNewerThan (a
//       revision) the request carries If-Newer-Than, and when the document is
//       not newer (304) onNotNewer(revision, request) is called instead.
//       onError(errorCode, request): 404 no such document, 400 malformed token.
//
//   backend.readDocuments({readToken: sinceRevision, ...}, onDone, onError)
//       GET /backend/documents?t=READTOKEN/REV,READTOKEN/REV,... (one request;
//       the server takes at most 200 tokens). sinceRevision null/undefined:
//       any revision. onDone(results, request) with results, as the server
//       sends it, {readToken: {revision, content} | null}: an entry for each
//       document newer than its sinceRevision (content is the parsed
//       document), null for one that does not exist, nothing for one that is
//       not newer. onError(errorCode, request).
//
//   backend.writeDocument(readToken, writeToken, derivedFrom, revision, data, onDone, onError)
//       PUT /backend/documents/READTOKEN with Write-Token, Derived-From,
//       Revision; body JSON.stringify(data). Create a document with two fresh
//       randomToken()s and derivedFrom 0; an inbox is a document with a
//       "#messages" object at its top level. revision must be greater than
//       derivedFrom (typically Date.now()). onDone(request);
//       onError(errorCode, request): 400 bad headers or not JSON, 403 wrong
//       write token, 409 derivedFrom is not the current revision
//       (request.getResponseHeader("Revision") then tells the current one),
//       413 too large.
//
//   backend.sendMessage(writeToken, messageId, message, onDone, onError)
//       POST /backend/documents/WRITETOKEN/messages/ID, body
//       JSON.stringify(message). Merges the message into the inbox: for an
//       existing id the higher revision ("#" field, default 0) wins.
//       Sent as text/plain, a "simple" request: no CORS preflight.
//       onDone(request); onError(errorCode, request): 400 bad id or JSON or
//       "#" not a number, 403 not an inbox, 404 no document has this write
//       token, 413 over 4096 bytes or the inbox is full.
//
//   backend.removeMessage(writeToken, messageId, onDone, onError)
//       DELETE /backend/documents/WRITETOKEN/messages/ID. onDone(request) also
//       when there was no such message; onError(errorCode, request) as
//       sendMessage. Removal is not a forward operation: an older version of
//       the message can be merged again later.
//
//   backend.watchDocument(readToken, onChange, onError) -> {close()}
//       Live updates of one document over the server's resource websocket
//       (/realtime, a "document" resource; no account needed). onChange(data,
//       revision) is called with the document as it is now, at once, and
//       after every write to it (a PUT, a message merged or removed over HTTP
//       or UDP), never twice for one revision and never with an older one.
//       onError(errorCode): 404 no such document yet (the watch stays: its
//       first write is delivered), 400 malformed token, 0 the connection was
//       lost (it reconnects by itself, 1 s then up to 30 s apart, and the
//       document as it is then arrives through onChange). close() ends the
//       watch. One websocket per Backend carries all of its watches.

var Backend = (function () {
  "use strict";

  function noop() {}

  function randomHex(bytes) {
    var values = new Uint8Array(bytes);
    crypto.getRandomValues(values);
    var hex = "";
    for (var i = 0; i < values.length; i++) hex += (values[i] < 16 ? "0" : "") + values[i].toString(16);
    return hex;
  }

  // The base ".../backend" for a url given by the caller.
  function resolve(url) {
    var base = String(url).replace(/\/+$/, "");
    return /\/backend$/.test(base) ? base : base + "/backend";
  }

  // The base when no url is given: the server this script came from, if it
  // came from a Satchel server, else the page's origin.
  function defaultBase() {
    var script = Backend.scriptUrl;
    if (script && /\/backend\/Backend\.m?js(\?.*)?$/.test(script)) return new URL(".", script).href.replace(/\/+$/, "");
    return resolve(typeof location !== "undefined" ? location.origin : "");
  }

  function Backend(url) {
    if (!(this instanceof Backend)) return new Backend(url);
    this.url = url === undefined || url === null || url === "" ? defaultBase() : resolve(url);
    this.timeout = 0;
  }

  Backend.randomMessageId = function () { return randomHex(8); };
  Backend.randomToken = function () { return randomHex(16); };
  Backend.prototype.randomMessageId = Backend.randomMessageId;
  Backend.prototype.randomToken = Backend.randomToken;

  // One request; settle(request) runs once the answer (or its absence) is known.
  Backend.prototype._request = function (method, path, headers, body, settle) {
    var request = new XMLHttpRequest();
    request.open(method, this.url + path);
    request.timeout = this.timeout;
    for (var name in headers) request.setRequestHeader(name, headers[name]);
    var settled = false;
    request.onloadend = function () {
      if (settled) return;
      settled = true;
      settle(request);
    };
    request.send(body === undefined ? null : body);
    return request;
  };

  function documentPath(token) {
    return "/documents/" + encodeURIComponent(token);
  }

  function messagePath(writeToken, messageId) {
    return documentPath(writeToken) + "/messages/" + encodeURIComponent(messageId);
  }

  function revisionOf(request) {
    var value = request.getResponseHeader("Revision");
    return value === null ? null : Number(value);
  }

  function parsed(request, onError) {
    try {
      return { value: JSON.parse(request.responseText) };
    } catch (error) {
      onError(request.status, request);
      return null;
    }
  }

  // For the calls whose success hands only the request.
  function plain(onDone, onError) {
    onDone = onDone || noop;
    onError = onError || noop;
    return function (request) {
      if (request.status >= 200 && request.status < 300) onDone(request);
      else onError(request.status, request);
    };
  }

  Backend.prototype.readDocument = function (readToken, onDone, onError, ifNewerThan, onNotNewer) {
    onDone = onDone || noop;
    onError = onError || noop;
    onNotNewer = onNotNewer || noop;
    var headers = {};
    if (ifNewerThan !== undefined && ifNewerThan !== null) headers["If-Newer-Than"] = String(ifNewerThan);
    return this._request("GET", documentPath(readToken), headers, undefined, function (request) {
      if (request.status === 304) return onNotNewer(revisionOf(request), request);
      if (request.status !== 200) return onError(request.status, request);
      var data = parsed(request, onError);
      if (data) onDone(data.value, revisionOf(request), request);
    });
  };

  Backend.prototype.readDocuments = function (sinceRevisions, onDone, onError) {
    onDone = onDone || noop;
    onError = onError || noop;
    var entries = [];
    for (var token in sinceRevisions) {
      var since = sinceRevisions[token];
      entries.push(encodeURIComponent(token) + (since === undefined || since === null ? "" : "/" + since));
    }
    return this._request("GET", "/documents?t=" + entries.join(","), {}, undefined, function (request) {
      if (request.status !== 200) return onError(request.status, request);
      var results = parsed(request, onError);
      if (results) onDone(results.value, request);
    });
  };

  Backend.prototype.writeDocument = function (readToken, writeToken, derivedFrom, revision, data, onDone, onError) {
    var headers = {
      "Content-Type": "application/json",
      "Write-Token": String(writeToken),
      "Derived-From": String(derivedFrom),
      "Revision": String(revision),
    };
    return this._request("PUT", documentPath(readToken), headers, JSON.stringify(data), plain(onDone, onError));
  };

  Backend.prototype.sendMessage = function (writeToken, messageId, message, onDone, onError) {
    // No Content-Type set: the browser sends text/plain, so no preflight.
    return this._request("POST", messagePath(writeToken, messageId), {}, JSON.stringify(message), plain(onDone, onError));
  };

  Backend.prototype.removeMessage = function (writeToken, messageId, onDone, onError) {
    return this._request("DELETE", messagePath(writeToken, messageId), {}, undefined, plain(onDone, onError));
  };

  // ---- watchDocument: the resource websocket (seed 004) -------------------

  function realtimeUrl(base) {
    var url = new URL(base.replace(/\/backend$/, "") + "/realtime", typeof location !== "undefined" ? location.href : undefined);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  // The Backend's one socket: opened on the first watch, closed after the
  // last, reopened after a loss with every watch subscribed again.
  Backend.prototype._live = function () {
    if (this._socket) return this._socket;
    var self = this;
    var live = { watches: {}, socket: null, delay: 1000, timer: null, closed: false };
    function send(token) {
      if (live.socket && live.socket.readyState === 1) {
        live.socket.send(JSON.stringify({ action: "subscribe", resource: { type: "document", id: token } }));
      }
    }
    function each(token, call) {
      var list = (live.watches[token] || []).slice();
      for (var i = 0; i < list.length; i++) call(list[i]);
    }
    function open() {
      live.timer = null;
      var socket = new WebSocket(realtimeUrl(self.url));
      live.socket = socket;
      socket.onopen = function () {
        live.delay = 1000;
        for (var token in live.watches) send(token);
      };
      socket.onmessage = function (event) {
        var message;
        try { message = JSON.parse(event.data); } catch (error) { return; }
        var resource = message.resource || {};
        if (resource.type !== "document" || !live.watches[resource.id]) return;
        if (message.warning === "resource_not_found") {
          each(resource.id, function (watch) { watch.onError(404); });
        } else if (message.error) {
          each(resource.id, function (watch) { watch.onError(message.code === "invalid_message" ? 400 : 0); });
        } else if (message.data && typeof message.data.revision === "number") {
          each(resource.id, function (watch) {
            if (watch.revision !== null && message.data.revision <= watch.revision) return;
            watch.revision = message.data.revision;
            watch.onChange(message.data.content, message.data.revision);
          });
        }
      };
      socket.onclose = function () {
        if (live.socket !== socket) return;
        live.socket = null;
        if (live.closed) return;
        for (var token in live.watches) each(token, function (watch) { watch.onError(0); });
        live.timer = setTimeout(open, live.delay);
        live.delay = Math.min(live.delay * 2, 30000);
      };
    }
    live.subscribe = send;
    live.unsubscribe = function (token) {
      if (live.socket && live.socket.readyState === 1) {
        live.socket.send(JSON.stringify({ action: "unsubscribe", resource: { type: "document", id: token } }));
      }
    };
    live.end = function () {
      live.closed = true;
      if (live.timer) clearTimeout(live.timer);
      if (live.socket) live.socket.close();
      self._socket = null;
    };
    this._socket = live;
    open();
    return live;
  };

  Backend.prototype.watchDocument = function (readToken, onChange, onError) {
    var live = this._live();
    var watch = { onChange: onChange || noop, onError: onError || noop, revision: null };
    var token = String(readToken);
    var first = !live.watches[token];
    (live.watches[token] = live.watches[token] || []).push(watch);
    if (first) live.subscribe(token);
    return {
      close: function () {
        var list = live.watches[token] || [];
        var at = list.indexOf(watch);
        if (at < 0) return;
        list.splice(at, 1);
        if (list.length) return;
        delete live.watches[token];
        live.unsubscribe(token);
        if (Object.keys(live.watches).length === 0) live.end();
      },
    };
  };

  var current = typeof document !== "undefined" ? document.currentScript : null;
  Backend.scriptUrl = current && current.src ? current.src : null;
  return Backend;
})();
