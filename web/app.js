// The page at / of `halfserve serve`: pick a served model, punctuate pasted text (:punctuate), or type and watch
// the text commit as it streams (the :stream WebSocket). Plain browser JavaScript, no library, nothing fetched
// from anywhere but this server.
"use strict";

const PAUSE_FLUSH_MS = 1500;  // a pause this long in typing ends the text, as the end of an utterance would

const $ = (id) => document.getElementById(id);
let servedModels = [];

function showError(message) {
  $("error").textContent = message || "";
}

// ---- choosing the model ------------------------------------------------------------------------------------------

function availableVersions(model) {
  return model.versions.filter((v) => v.state === "AVAILABLE");
}

function selectedModel() {
  return servedModels.find((m) => m.name === $("model").value);
}

function selectedVersion() {
  const model = selectedModel();
  return model && availableVersions(model).find((v) => String(v.version) === $("version").value);
}

function fillSelect(select, values, describe) {
  const previous = select.value;
  select.replaceChildren(...values.map((value) => new Option(describe(value), String(value))));
  if (values.map(String).includes(previous)) select.value = previous;
}

function onModelChosen() {
  const model = selectedModel();
  const precisions = model ? [...new Set(availableVersions(model).map((v) => v.precision))] : [];
  fillSelect($("precision"), precisions, (p) => p);
  onPrecisionChosen();
}

function onPrecisionChosen() {
  const model = selectedModel();
  const versions = model ? availableVersions(model).filter((v) => v.precision === $("precision").value) : [];
  fillSelect($("version"), versions.map((v) => v.version), (v) => "version " + v);
  onVersionChosen();
}

function onVersionChosen() {
  const version = selectedVersion();
  $("engine").textContent = version
    ? version.engine + (version.punctuates ? "" : " — this model cannot punctuate text (no vocabulary or no head)")
    : "no version of this model is available";
  live.restart();
}

async function loadModels() {
  try {
    const reply = await fetch("/v1/models");
    const body = await reply.json();
    if (!reply.ok) throw new Error(body.error || reply.statusText);
    servedModels = body.models;
    fillSelect($("model"), servedModels.map((m) => m.name), (name) => name);
    onModelChosen();
  } catch (error) {
    showError("Could not list the served models: " + error.message);
  }
}

function modelPath() {
  const version = selectedVersion();
  if (!version) throw new Error("choose a model version first");
  return "/v1/models/" + encodeURIComponent($("model").value) + "/versions/" + version.version;
}

// ---- showing a result with what the model said about each word ---------------------------------------------------

// Fills `container` with `text`, each of `pieces` ({text, title}, in order, each found in `text` ignoring case,
// since a result may capitalize) in a span whose title says what the model chose. Marks between pieces are
// highlighted; every character of `text` is shown exactly once, in order.
function annotate(container, text, pieces) {
  const lower = text.toLowerCase();
  let at = 0;
  const addBetween = (gap) => {
    if (!gap) return;
    if (gap.trim() === "") {
      container.append(gap);
      return;
    }
    const mark = document.createElement("span");
    mark.className = "mark";
    mark.textContent = gap;
    container.append(mark);
  };
  for (const piece of pieces) {
    if (!piece.text) continue;
    const found = lower.indexOf(piece.text.toLowerCase(), at);
    if (found < 0) break;
    addBetween(text.slice(at, found));
    const span = document.createElement("span");
    span.className = "token";
    span.title = piece.title;
    span.textContent = text.slice(found, found + piece.text.length);
    container.append(span);
    at = found + piece.text.length;
  }
  addBetween(text.slice(at));
}

function describeLabel(label, mark, probability) {
  const chance = typeof probability === "number" ? (probability * 100).toFixed(1) + "%" : "?";
  return label + (mark ? " (adds “" + mark + "”)" : "") + " · probability " + chance;
}

// ---- pasted text: one :punctuate request --------------------------------------------------------------------------

async function punctuatePasted() {
  showError("");
  const input = $("paste-text").value;
  const result = $("paste-result");
  try {
    const reply = await fetch(modelPath() + ":punctuate", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({text: input, labels: true, probabilities: true}),
    });
    const body = await reply.json();
    if (!reply.ok) throw new Error(body.error || reply.statusText);
    // Token offsets are bytes of the UTF-8 input: cut the input's bytes to get each token's text as typed.
    const bytes = new TextEncoder().encode(input);
    const decoder = new TextDecoder();
    const pieces = body.tokens.map((token) => ({
      text: decoder.decode(bytes.subarray(token.begin, token.end)),
      title: token.token + ": " + describeLabel(token.label, token.mark, token.probability),
    }));
    result.replaceChildren();
    annotate(result, body.text, pieces);
    result.dataset.text = body.text;
  } catch (error) {
    showError("Punctuation failed: " + error.message);
  }
}

// ---- typed text: a WebSocket stream ---------------------------------------------------------------------------------

// The first message of a stream: the window and stride given, or none for the server's.
function streamSettings() {
  const settings = {};
  for (const name of ["window", "stride"]) {
    const value = $("live-" + name).value;
    if (value !== "") settings[name] = Number(value);
  }
  return settings;
}

// One stream at a time, for the chosen version; opened on first use, reopened when the choice changes.
const live = {
  socket: null,
  ready: null,       // resolves once the stream's settings have come back
  sent: "",          // the input's text already sent (the input only grows until Enter clears it)
  unflushed: false,  // text was sent since the last flush
  pauseTimer: null,

  restart() {
    if (this.socket) this.socket.close(1000, "model changed");
    this.socket = null;
    this.ready = null;
    this.sent = "";
    this.unflushed = false;
    $("live-input").value = "";
    $("live-result").replaceChildren();
    delete $("live-result").dataset.text;
    $("live-status").textContent = "";
    $("live-pending").textContent = "";
  },

  open() {
    if (this.ready) return this.ready;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(scheme + "//" + location.host + modelPath() + ":stream");
    this.socket = socket;
    this.ready = new Promise((resolve, reject) => {
      let settled = false;
      socket.onopen = () => socket.send(JSON.stringify(streamSettings()));
      socket.onerror = () => reject(new Error("the stream could not be opened"));
      socket.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (!settled) {  // the answer to the settings
          settled = true;
          if (message.error) {
            reject(new Error(message.error));
            socket.close(1000);
            return;
          }
          const status = $("live-status");
          status.dataset.window = message.window;
          status.dataset.stride = message.stride;
          status.textContent = "Streaming to " + message.model + " version " + message.version + ": window " +
              message.window + " tokens, stride " + message.stride + ", a word waits for up to " +
              message.lookahead_tokens + " tokens after it.";
          resolve(socket);
          return;
        }
        this.receive(message);
      };
      socket.onclose = (event) => {
        if (this.socket !== socket) return;  // replaced on purpose
        this.socket = null;
        this.ready = null;
        this.sent = $("live-input").value;  // a new stream starts with what is typed next
        this.unflushed = false;
        if (event.code !== 1000 || event.reason) {
          $("live-status").textContent = "The stream closed (" + event.code + (event.reason ? ": " + event.reason : "") +
              "); typing again opens a new one.";
        }
      };
    });
    this.ready.catch((error) => showError("Live text: " + error.message));
    return this.ready;
  },

  receive(message) {
    if (message.error) {
      showError("Live text: " + message.error);
      return;
    }
    const pieces = message.words.map((word) => ({
      text: word.text,
      title: describeLabel(word.label, word.mark, word.probability),
    }));
    const result = $("live-result");
    annotate(result, message.committed, pieces);
    result.dataset.text = (result.dataset.text || "") + message.committed;
    const pending = $("live-pending");
    pending.textContent = message.pending_bytes > 0
      ? message.pending_bytes + " bytes of text wait for what comes after them"
      : "everything sent is committed";
    pending.dataset.pendingBytes = message.pending_bytes;
    pending.dataset.final = message.final ? "true" : "false";
  },

  async send(message) {
    try {
      const socket = await this.open();
      socket.send(JSON.stringify(message));
    } catch (error) {
      showError("Live text: " + error.message);
    }
  },

  onInput() {
    const input = $("live-input");
    if (!input.value.startsWith(this.sent)) {
      // Sent text cannot be taken back: keep what was sent, drop the edit.
      input.value = this.sent;
      $("live-status").textContent = "Only added text streams: what was sent stays as sent.";
      return;
    }
    const piece = input.value.slice(this.sent.length);
    if (piece) {
      this.sent = input.value;
      this.unflushed = true;
      $("live-pending").dataset.final = "false";
      this.send({text: piece});
    }
    clearTimeout(this.pauseTimer);
    this.pauseTimer = setTimeout(() => this.flush(false), PAUSE_FLUSH_MS);
  },

  flush(clearInput) {
    clearTimeout(this.pauseTimer);
    if (this.unflushed) this.send({flush: true});
    this.unflushed = false;
    if (clearInput) {
      $("live-input").value = "";
      this.sent = "";
    }
  },
};

document.addEventListener("DOMContentLoaded", () => {
  $("model").addEventListener("change", onModelChosen);
  $("precision").addEventListener("change", onPrecisionChosen);
  $("version").addEventListener("change", onVersionChosen);
  $("punctuate").addEventListener("click", punctuatePasted);
  $("live-input").addEventListener("input", () => live.onInput());
  $("live-window").addEventListener("change", () => live.restart());
  $("live-stride").addEventListener("change", () => live.restart());
  $("live-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      live.flush(true);
    }
  });
  loadModels();
});
