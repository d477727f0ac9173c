// Synesthete's page: record / listen live / upload / search -> the JSON API. Plain JS, no build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    record: $("record"), live: $("live"), meterWrap: $("meter-wrap"), meterBar: $("meter-bar"),
    countdown: $("countdown"), recMax: $("rec-max"), drop: $("drop"), file: $("file"),
    search: $("search"), suggestions: $("suggestions"), status: $("status"), error: $("error"),
    answer: $("answer"), headline: $("headline"), results: $("results"), about: $("about"),
  };
  const config = { record_seconds: 15, live_interval_s: 2, max_upload_bytes: 25 * 1024 * 1024, top_k: 5 };
  const MSG = {
    offline: "I can't reach the server right now; check your connection and try again.",
    mic_denied: "I need permission to use the microphone; allow it in your browser and try again.",
    no_mic: "Recording needs a microphone and a secure (https) page here; you can still upload a file.",
    no_recorder: "This browser can't record audio; please upload a file instead.",
    lost: "The connection dropped before I could answer; please try again.",
    too_large: "That file is too large for me; please send a shorter clip.",
    internal: "Something went wrong on our side; please try again later.",
    rec_failed: "The recording stopped unexpectedly; please try again.",
  };
  let busy = false;       // a query is in flight (one at a time)
  let mic = null;         // the recording session, if any (see "microphone" below)

  // ---- small helpers ---------------------------------------------------------------------

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }
  function status(text) { ui.status.textContent = text || ""; }
  function showError(text) {
    ui.error.textContent = text;
    ui.error.hidden = !text;
    if (text) status("");
  }
  function setBusy(on) {
    busy = on;
    showCapture();
  }
  async function apiJson(resp) {
    let body = null;
    try { body = await resp.json(); } catch (_) { /* not JSON */ }
    if (!resp.ok) {
      const msg = body && body.error && body.error.message;
      throw new Error(msg || (resp.status === 413 ? MSG.too_large : MSG.internal));
    }
    return body;
  }
  async function call(url, opts) {
    let resp;
    try { resp = await fetch(url, opts); } catch (_) { throw new Error(MSG.offline); }
    return apiJson(resp);
  }

  // ---- the answer ------------------------------------------------------------------------

  const isSpotifyTrack = (link) => /^https:\/\/open\.spotify\.com\/track\/[0-9A-Za-z]{22}$/.test(link || "");

  function trackItem(t) {
    const pct = t.match != null ? t.match * 20 : Math.max(0, Math.min(100, Math.round(t.similarity * 100)));
    const bar = el("b");
    bar.style.width = `${pct}%`; // CSSOM, not a style attribute: allowed by the page's CSP
    const actions = el("div", { class: "actions" },
      el("a", { class: "spotify", href: t.link, target: "_blank", rel: "noopener noreferrer",
                text: isSpotifyTrack(t.link) ? "Open in Spotify" : "Find on Spotify" }));
    const meta = el("span", { class: "meta" },
      ...(t.genres || []).slice(0, 3).map((g) => el("span", { class: "chip genre", text: g })),
      el("span", { class: "sim", title: `cosine ${t.similarity.toFixed(3)}` },
        el("i", {}, bar), el("span", { class: "similarity", text: t.match_text })));
    if (t.heard === false) meta.append(el("span", { class: "chip unheard", text: "not heard",
                                                    title: "placed by its Spotify features; no audio was analysed" }));
    if (t.reason) meta.append(el("span", { class: "reason", text: t.reason }));
    const li = el("li", { class: "track", "data-track-id": t.track_id },
      el("span", { class: "name", text: t.name }),
      actions,
      el("span", { class: "artist", text: t.artist || "Unknown artist" }),
      meta);
    if (isSpotifyTrack(t.link)) {
      // the Spotify player loads only when asked: no third-party request until the listener wants it
      meta.append(el("button", { type: "button", class: "mini play", text: "▶ Play",
                                 onclick: () => toggleEmbed(li, t) }));
    }
    meta.append(el("button", { type: "button", class: "mini more", text: "More like this",
                               onclick: () => similar(t.track_id, t.name) }));
    if (t.artist) {
      meta.append(el("button", { type: "button", class: "mini artist-more", text: "More by this artist",
                                 onclick: () => similar(t.track_id, t.name, true) }));
    }
    return li;
  }

  function toggleEmbed(li, t) {
    const open = li.querySelector(".embed");
    document.querySelectorAll(".embed").forEach((e) => e.remove());
    if (open) return;
    const id = t.link.split("/track/")[1];
    li.append(el("div", { class: "embed" },
      el("iframe", { src: `https://open.spotify.com/embed/track/${encodeURIComponent(id)}`, loading: "lazy",
                     allow: "encrypted-media; clipboard-write", title: `Spotify player: ${t.name}` })));
  }

  // ---- radio (issue 31): a playlist from the answer's song, and its links to take away -------

  function answerActions(ans, guess, isRadio) {
    const row = document.getElementById("answer-actions");
    row.replaceChildren();
    const start = ans.seed || ans.identified || (ans.results || [])[0];
    if (!guess && !isRadio && start && start.track_id) {
      row.append(el("button", { type: "button", id: "radio", class: "secondary",
                                onclick: () => radio(start.track_id, start.name) }, "📻 Radio from this song"));
    }
    if (isRadio && (ans.results || []).length) {
      row.append(el("button", { type: "button", id: "copy-links", class: "secondary",
                                onclick: () => copyLinks(ans) }, "Copy links"),
                 el("a", { href: `/api/radio?track_id=${encodeURIComponent(ans.seed.track_id)}&n=${ans.results.length}` +
                             "&format=m3u", download: "radio.m3u", class: "download", text: "Download .m3u" }));
    }
  }
  async function copyLinks(ans) {
    const text = ans.results.map((t) => t.link).join("\n") + "\n";
    try {
      await navigator.clipboard.writeText(text);
      status(`Copied ${ans.results.length} links: paste them into a Spotify playlist.`);
    } catch (e) {  // no clipboard permission (an insecure origin): show them to copy by hand
      window.prompt("Copy these links:", text);
    }
  }
  async function radio(trackId, name) {
    if (busy || mic) return;
    showError("");
    setBusy(true);
    status(`Making a radio from ${name}…`);
    try {
      render(await call(`/api/radio?track_id=${encodeURIComponent(trackId)}`), { radio: true });
      status("");
    } catch (e) {
      showError(e.message);
    } finally {
      setBusy(false);
    }
  }

  function render(ans, { guess = false, heard = null, radio = false } = {}) {
    ui.headline.replaceChildren();
    ui.headline.classList.toggle("guess", guess);
    answerActions(ans, guess, radio);
    const id = ans.identified;
    if (radio) {
      ui.headline.append(el("div", { id: "radio-from", class: "seed" }, "📻 Radio from ", el("b", { text: ans.seed.name }),
        ` by ${ans.seed.artist || "an unknown artist"}`),
        el("span", { class: "sub", text: `${ans.results.length} tracks, each near the one before` +
          (ans.note ? `. ${ans.note}` : "") }));
    } else if (id) {
      ui.headline.append(el("div", { id: "sounds-like", class: "sounds-like" },
        guess ? "Could be " : "Sounds like ", el("b", { text: id.name }), ` by ${id.artist || "an unknown artist"}`),
        el("span", { class: "sub", text: `${Math.round(id.confidence * 100)}% sure` +
          (id.level_text && !guess ? ` (${id.level_text})` : "") +
          (heard ? ` after ${heard.toFixed(0)} s` : "") + " · five more that feel like it:" }));
    } else if (ans.might_be && !guess) {
      ui.headline.append(el("div", { class: "might-be" }, "Might be ", el("b", { text: ans.might_be.name }),
        ` by ${ans.might_be.artist || "an unknown artist"} (not sure)`),
        el("span", { class: "sub", text: "These sound like it:" }));
    } else if (ans.seed) {
      ui.headline.append(el("div", { class: "seed" }, "Like ", el("b", { text: ans.seed.name }),
        ` by ${ans.seed.artist || "an unknown artist"}:`));
    } else {
      ui.headline.append(el("div", { text: guess ? "Listening… closest so far:" :
        "I don't know that exact recording, but these sound like it:" }));
    }
    ui.results.replaceChildren(...(ans.results || []).map(trackItem));
    const wasHidden = ui.answer.hidden;
    ui.answer.hidden = false;
    if (wasHidden || !guess) ui.answer.scrollIntoView({ behavior: "smooth", block: "start" });
  }

  // ---- recommend from audio (record / upload) ---------------------------------------------

  async function recommend(blob, filename) {
    if (busy) return;
    showError("");
    if (blob.size > config.max_upload_bytes) { showError(MSG.too_large); return; }
    setBusy(true);
    status("Listening to it…");
    try {
      const form = new FormData();
      form.append("file", blob, filename);
      render(await call("/api/recommend", { method: "POST", body: form }));
      status("");
    } catch (e) {
      showError(e.message);
    } finally {
      setBusy(false);
    }
  }

  async function similar(trackId, name, sameArtist = false) {
    if (busy || mic) return;  // one thing at a time: not while the microphone is on
    showError("");
    setBusy(true);
    status(sameArtist ? `Finding more by the artist of ${name}…` : `Finding songs like ${name}…`);
    try {
      render(await call(`/api/similar?track_id=${encodeURIComponent(trackId)}${sameArtist ? "&same_artist=1" : ""}`));
      status("");
    } catch (e) {
      showError(e.message);
    } finally {
      setBusy(false);
    }
  }

  // ---- microphone: one recording at a time ------------------------------------------------
  //
  // `mic` is the one recording session, and the only owner of the microphone stream, the
  // MediaRecorder, the level meter and the countdown. Its life:
  //
  //   idle ─press─► starting ─recorder running for DOUBLE_PRESS_S─► armed ─press / time up─► stopping ─► idle
  //                  │  (presses ignored: "… Starting")                           (onEnd: ok, seconds, chunks)
  //                  └─ refused / failed / cancelled ─► idle                      (onEnd: error | cancelled)
  //
  // `mic` is set synchronously on the press, before the permission prompt is awaited, so a
  // second press can never open a second stream. Every way out goes through endCapture(),
  // which stops every track, clears every timer and frame, closes the meter's AudioContext and
  // calls onEnd exactly once. Timer and recorder callbacks act only on their own session, so a
  // late callback of an old one cannot stop a later recording.

  const DOUBLE_PRESS_S = 0.5;  // presses this soon after the recorder started are a double press

  const minRecordSeconds = () => Math.max(1, Number(config.min_signal_seconds) || 2);

  function pickMime() {
    if (!window.MediaRecorder) return null;
    for (const m of ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"]) {
      if (MediaRecorder.isTypeSupported && MediaRecorder.isTypeSupported(m)) return m;
    }
    return "";
  }

  function showCapture() {
    const s = mic;
    for (const [kind, button, idleText] of [["record", ui.record, "● Record"], ["live", ui.live, "◉ Listen live"]]) {
      const mine = s && s.kind === kind;
      button.textContent = !mine ? idleText : s.armed ? "■ Stop" : "… Starting";
      button.classList.toggle("recording", Boolean(mine && s.armed));
      // while starting, both are disabled; while armed, only this session's Stop is live
      button.disabled = s ? !(mine && s.armed) : busy;
    }
    ui.file.disabled = busy || Boolean(s);
    ui.meterWrap.hidden = !(s && s.recorder);
    if (!s) { ui.meterBar.style.width = "0"; ui.countdown.textContent = ""; }
  }

  /** Start a session now (synchronously); the microphone is opened in the background. */
  function beginCapture(kind, { onChunk = null, onEnd }) {
    const s = { kind, armed: false, ended: false, stream: null, recorder: null, ctx: null, raf: 0,
                timers: [], chunks: [], mime: "", t0: 0, t1: 0, onChunk, onEnd };
    mic = s;
    showCapture();
    openCapture(s).catch((e) => endCapture(s, { error: e.message }));
    return s;
  }

  async function openCapture(s) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) throw new Error(MSG.no_mic);
    const mime = pickMime();
    if (mime === null) throw new Error(MSG.no_recorder);
    let stream;
    try {
      // music, not speech: no echo cancellation, noise suppression or automatic gain
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
    } catch (e) {
      throw new Error(e && e.name === "NotAllowedError" ? MSG.mic_denied : MSG.no_mic);
    }
    s.stream = stream;  // owned from here on: endCapture stops its tracks
    if (s.ended) { releaseCapture(s); return; }  // cancelled while the browser asked
    const rec = new MediaRecorder(stream, mime ? { mimeType: mime, audioBitsPerSecond: 64000 } : {});
    s.recorder = rec;
    s.mime = rec.mimeType || mime || "audio/webm";
    rec.ondataavailable = (ev) => {
      if (!ev.data || !ev.data.size) return;
      s.chunks.push(ev.data);
      if (s.onChunk && !s.ended) s.onChunk(ev.data);
    };
    rec.onstop = () => endCapture(s, { ok: true });
    rec.onerror = () => endCapture(s, { error: MSG.rec_failed });
    startMeter(s);
    rec.start(1000);
    s.t0 = performance.now();
    const limit = config.record_seconds;
    const tick = () => {
      const left = Math.max(0, limit - (performance.now() - s.t0) / 1000);
      ui.countdown.textContent = `${Math.ceil(left - 1e-9)} s left`;
      if (left <= 0) stopCapture(s);
    };
    s.timers.push(setInterval(tick, 200));
    tick();
    s.timers.push(setTimeout(() => { s.armed = true; if (mic === s) showCapture(); }, DOUBLE_PRESS_S * 1000));
    showCapture();
  }

  function startMeter(s) {
    // level meter: RMS of the analyser's waveform, drawn every frame
    try {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      s.ctx = new Ctx();
      const an = s.ctx.createAnalyser();
      an.fftSize = 1024;
      s.ctx.createMediaStreamSource(s.stream).connect(an);
      const buf = new Float32Array(an.fftSize);
      const draw = () => {
        if (s.ended) return;
        an.getFloatTimeDomainData(buf);
        let sum = 0;
        for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
        const db = 20 * Math.log10(Math.sqrt(sum / buf.length) + 1e-8);
        ui.meterBar.style.width = `${Math.max(0, Math.min(100, (db + 60) * 100 / 60))}%`;
        s.raf = requestAnimationFrame(draw);
      };
      draw();
    } catch (_) { /* no Web Audio: recording still works, without a meter */ }
  }

  /** Stop recording: the recorder's last chunk arrives, then onstop ends the session with what it heard. */
  function stopCapture(s) {
    if (s.ended || s.t1) return;
    if (!s.recorder || s.recorder.state === "inactive") { endCapture(s, { cancelled: true }); return; }
    s.t1 = performance.now();
    s.timers.forEach((t) => clearInterval(t));  // clearInterval clears timeouts too
    s.timers = [setTimeout(() => endCapture(s, { ok: true }), 3000)];  // a recorder that never says onstop
    s.recorder.stop();
  }

  /** End without a result (the live session is over, the page is going away). */
  const cancelCapture = (s) => endCapture(s, { cancelled: true });

  function releaseCapture(s) {
    s.timers.forEach((t) => clearInterval(t));
    s.timers = [];
    if (s.raf) cancelAnimationFrame(s.raf);
    if (s.recorder && s.recorder.state !== "inactive") {
      s.recorder.onstop = null;
      try { s.recorder.stop(); } catch (_) { /* already stopped */ }
    }
    if (s.stream) s.stream.getTracks().forEach((t) => t.stop());
    if (s.ctx) { s.ctx.close().catch(() => {}); s.ctx = null; }
  }

  function endCapture(s, outcome) {
    if (s.ended) { releaseCapture(s); return; }
    s.ended = true;
    releaseCapture(s);
    if (mic === s) { mic = null; showCapture(); }
    const seconds = s.t0 ? ((s.t1 || performance.now()) - s.t0) / 1000 : 0;
    s.onEnd({ ...outcome, seconds, chunks: s.chunks, mime: s.mime });
  }

  window.addEventListener("pagehide", () => { if (mic) cancelCapture(mic); });

  const extFor = (mime) => (mime.includes("ogg") ? "ogg" : mime.includes("mp4") ? "m4a" : "webm");
  const tooShort = (out) => out.seconds < minRecordSeconds() || out.chunks.length === 0;
  const tooShortMessage = () =>
    `That was too short for me to hear anything; let me listen for at least ${Math.ceil(minRecordSeconds())} seconds.`;

  function onRecord() {
    if (mic) { if (mic.kind === "record" && mic.armed) stopCapture(mic); return; }  // starting: ignored
    if (busy) return;
    showError("");
    status("Recording… hold the phone near the music.");
    beginCapture("record", {
      onEnd: (out) => {
        status("");
        if (out.error) showError(out.error);
        else if (out.cancelled) { /* nothing to send */ }
        else if (tooShort(out)) showError(tooShortMessage());
        else recommend(new Blob(out.chunks, { type: out.mime }), `recording.${extFor(out.mime)}`);
      },
    });
  }

  // ---- listen live: stream chunks over a WebSocket, show running guesses ----------------------

  function onLive() {
    if (mic) { if (mic.kind === "live" && mic.armed) stopCapture(mic); return; }  // starting: ignored
    if (busy) return;
    showError("");
    setBusy(true);  // one live session is one query, from the press until the socket is done
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/listen`;
    let ws;
    try { ws = new WebSocket(url); } catch (_) { setBusy(false); showError(MSG.offline); return; }
    ws.binaryType = "arraybuffer";
    let finished = false;
    const pending = [];
    const send = (data) => { if (ws.readyState === WebSocket.OPEN) ws.send(data); else pending.push(data); };
    const cap = beginCapture("live", {
      onChunk: (blob) => { if (!finished) send(blob); },
      // the recorder's last chunk arrives before onstop, so "stop" follows every byte
      onEnd: (out) => {
        if (finished) return;
        if (out.ok && !tooShort(out)) { send(JSON.stringify({ type: "stop" })); status("Thinking…"); return; }
        finish(out.error || (out.ok ? tooShortMessage() : ""));
      },
    });
    // the session is over: free the microphone and the socket; `message`: one sentence to show
    function finish(message) {
      if (finished) return;
      finished = true;
      if (message) showError(message);
      cancelCapture(cap);
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close();
      setBusy(false);
    }
    ws.onopen = () => { while (pending.length) ws.send(pending.shift()); };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch (_) { return; }
      if (m.type === "listening") status(`Listening… ${Math.round(m.seconds)} s`);
      else if (m.type === "status") status(m.message);
      else if (m.type === "guess") {
        render(m.answer, { guess: true, heard: m.seconds });
        status(`Listening… ${Math.round(m.seconds)} s`);
      } else if (m.type === "done") {
        if (m.answer) render(m.answer, { heard: m.seconds });
        status(m.reason === "identified" ? `Got it in ${Math.round(m.seconds)} s.` : "");
        finish("");
      } else if (m.type === "error") {
        finish(m.message);
      }
    };
    ws.onerror = () => {};
    ws.onclose = () => { if (!finished) { status(""); finish(MSG.lost); } };
    status("Listening…");
  }

  // ---- upload, drag and drop ---------------------------------------------------------------

  function onFiles(files) {
    const f = files && files[0];
    if (f) recommend(f, f.name);
  }
  ui.file.addEventListener("change", () => { onFiles(ui.file.files); ui.file.value = ""; });
  for (const ev of ["dragenter", "dragover"]) {
    ui.drop.addEventListener(ev, (e) => { e.preventDefault(); ui.drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    ui.drop.addEventListener(ev, (e) => { e.preventDefault(); ui.drop.classList.remove("over"); });
  }
  ui.drop.addEventListener("drop", (e) => onFiles(e.dataTransfer && e.dataTransfer.files));

  // ---- search with autocomplete ------------------------------------------------------------

  let searchTimer = null;
  let searchAbort = null;
  let hits = [];
  let active = -1;

  function closeSuggestions() {
    ui.suggestions.hidden = true;
    ui.search.setAttribute("aria-expanded", "false");
    active = -1;
  }
  function showSuggestions() {
    ui.suggestions.replaceChildren(...hits.map((h, i) => el("li", {
      role: "option", id: `opt-${i}`, "aria-selected": String(i === active), "data-track-id": h.track_id,
      onmousedown: (e) => { e.preventDefault(); choose(i); },
    }, h.name, el("small", { text: h.artist || "" }))));
    ui.suggestions.hidden = hits.length === 0;
    ui.search.setAttribute("aria-expanded", String(hits.length > 0));
    if (active >= 0) ui.search.setAttribute("aria-activedescendant", `opt-${active}`);
    else ui.search.removeAttribute("aria-activedescendant");
  }
  function choose(i) {
    const h = hits[i];
    if (!h) return;
    ui.search.value = h.title || h.name;
    closeSuggestions();
    similar(h.track_id, h.name);
  }
  async function suggest(q) {
    if (searchAbort) searchAbort.abort();
    searchAbort = new AbortController();
    try {
      const resp = await fetch(`/api/search?q=${encodeURIComponent(q)}&limit=8`, { signal: searchAbort.signal });
      if (resp.status === 429) return; // typing fast: the next keystroke will try again
      const body = await apiJson(resp);
      if (ui.search.value.trim() !== q) return;
      hits = body.results || [];
      active = -1;
      showSuggestions();
    } catch (e) {
      if (e.name !== "AbortError") { hits = []; closeSuggestions(); }
    }
  }
  // A pasted Spotify link is a query of its own (issue 31): no name suggestions; Enter or the
  // paste itself asks /api/similar, whose engine reads the link (track, album, short link...).
  const SPOTIFY_LINK = /(open\.spotify\.com\/|spotify:[a-z]+:|spotify\.(app\.)?link\/)/i;
  function similarToLink() {
    const q = ui.search.value.trim();
    hits = [];
    closeSuggestions();
    similar(q, "the linked track");
  }
  ui.search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    const q = ui.search.value.trim();
    if (!q || SPOTIFY_LINK.test(q)) { hits = []; closeSuggestions(); return; }
    searchTimer = setTimeout(() => suggest(q), 150);
  });
  ui.search.addEventListener("paste", () => setTimeout(() => {
    if (SPOTIFY_LINK.test(ui.search.value)) similarToLink();
  }, 0));
  ui.search.addEventListener("keydown", (e) => {
    if (e.key === "ArrowDown" && hits.length) { active = (active + 1) % hits.length; showSuggestions(); e.preventDefault(); }
    else if (e.key === "ArrowUp" && hits.length) { active = (active - 1 + hits.length) % hits.length; showSuggestions(); e.preventDefault(); }
    else if (e.key === "Enter") {
      e.preventDefault();
      if (SPOTIFY_LINK.test(ui.search.value)) similarToLink();
      else choose(active >= 0 ? active : 0);
    }
    else if (e.key === "Escape") closeSuggestions();
  });
  ui.search.addEventListener("blur", () => setTimeout(closeSuggestions, 150));

  // ---- start -------------------------------------------------------------------------------

  ui.record.addEventListener("click", onRecord);
  ui.live.addEventListener("click", onLive);
  fetch("/api/config").then((r) => (r.ok ? r.json() : null)).then((c) => {
    if (c) Object.assign(config, c);
    ui.recMax.textContent = String(Math.round(config.record_seconds));
  }).catch(() => {});
  fetch("/healthz").then((r) => r.json()).then((h) => {
    if (h && h.indexed_tracks != null) ui.about.textContent = `${h.indexed_tracks} songs in the catalogue`;
  }).catch(() => {});
  document.body.dataset.ready = "1";
})();
