// kbqa chat page: plain JS, no build step. Answers stream over server-sent events.
// Conversations live in this browser's localStorage; admin.js adds documents and feedback.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_CHATS = 30;
const MAX_TURNS = 50;
const state = {
  key: localStorage.getItem("kbqa.key") || "",
  kb: localStorage.getItem("kbqa.kb") || "",
  chats: loadChats(), // [{id, kb, title, updated, turns: [{question, answer, sources, mode, refused, ms}]}]
  chatId: localStorage.getItem("kbqa.chat") || "",
  busy: false,
};

function loadChats() {
  try { return JSON.parse(localStorage.getItem("kbqa.chats") || "[]"); } catch { return []; }
}

function saveChats() {
  state.chats.sort((a, b) => b.updated - a.updated);
  state.chats = state.chats.slice(0, MAX_CHATS);
  try {
    localStorage.setItem("kbqa.chats", JSON.stringify(state.chats));
  } catch { // storage full: drop the oldest chat and try once more
    state.chats.pop();
    localStorage.setItem("kbqa.chats", JSON.stringify(state.chats));
  }
  localStorage.setItem("kbqa.chat", state.chatId);
}

function currentChat() {
  return state.chats.find((c) => c.id === state.chatId) || null;
}

function headers(json = true) {
  const h = json ? { "Content-Type": "application/json" } : {};
  if (state.key) h.Authorization = `Bearer ${state.key}`;
  return h;
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text; // never innerHTML: answers quote documents
  return node;
}

function basename(path) {
  return String(path).split(/[\\/]/).pop();
}

function kbPath(kb, rest = "") {
  return `/v1/kbs/${encodeURIComponent(kb)}${rest}`;
}

function setStatus(text, isError = false) {
  $("status").textContent = text || "";
  $("status").classList.toggle("error", isError);
}

async function errorText(response) {
  try {
    const body = await response.json();
    const d = body.detail ?? (body.error && body.error.message);
    return Array.isArray(d) ? d.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ") : d;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

async function loadKbs() {
  const select = $("kb");
  const r = await fetch("/v1/kbs", { headers: headers(false) });
  if (!r.ok) {
    select.replaceChildren(el("option", "", "（无可用知识库）"));
    setStatus(r.status === 401 ? "此服务器需要 API Key：点击右上角 ⚙ 输入。" : await errorText(r), true);
    return;
  }
  const { kbs } = await r.json();
  select.replaceChildren(...kbs.map((kb) => {
    const o = el("option", "", `${kb.name}（${kb.documents} 篇文档）`);
    o.value = kb.name;
    return o;
  }));
  if (!kbs.length) select.replaceChildren(el("option", "", "（还没有知识库）"));
  if (kbs.some((kb) => kb.name === state.kb)) select.value = state.kb;
  state.kb = kbs.length ? select.value : "";
  setStatus(kbs.length ? "" : "还没有知识库：管理员可在 📄 中上传文档。");
  await loadSuggestions();
}

async function loadSuggestions() {
  const box = $("suggestions");
  box.replaceChildren();
  if (!state.kb) return;
  const r = await fetch(`${kbPath(state.kb, "/suggestions")}?n=4`, { headers: headers(false) });
  if (!r.ok) return;
  for (const s of (await r.json()).suggestions) {
    const b = el("button", "chip", s);
    b.type = "button";
    b.addEventListener("click", () => { $("question").value = s; $("ask").requestSubmit(); });
    box.append(b);
  }
}

// The source dialog: the passage with its neighbours, and the original file to download.
async function showSource(hit, n, kb) {
  $("source-title").textContent = `[${n}] ${basename(hit.source)}`;
  $("source-path").textContent = hit.source;
  const m = hit.metadata || {};
  const parts = [];
  if (m.headings && m.headings.length) parts.push(m.headings.join(" › "));
  if (m.page) parts.push(`第 ${m.page} 页`);
  if (m.slide) parts.push(`第 ${m.slide} 张幻灯片`);
  if (m.row) parts.push(`第 ${m.row} 行`);
  parts.push(`相似度 ${Number(hit.score).toFixed(3)}`);
  $("source-meta").textContent = parts.join(" · ");
  $("source-status").textContent = "";
  const box = $("source-text");
  box.replaceChildren(el("mark", "", hit.text));
  $("source-download").onclick = () => download(kb, hit);
  $("source").showModal();
  const r = await fetch(`${kbPath(kb, `/chunks/${hit.chunk_id}/context`)}?window=1`, { headers: headers(false) });
  if (!r.ok) return; // the passage alone still shows
  const ctx = await r.json();
  box.replaceChildren(
    ...ctx.before.map((t) => el("div", "ctx", t)),
    el("mark", "", hit.text),
    ...ctx.after.map((t) => el("div", "ctx", t)),
  );
}

async function download(kb, hit) {
  // fetch, not a link: the key travels in a header, never in a URL that logs keep.
  const r = await fetch(kbPath(kb, `/documents/${hit.doc_id}/file`), { headers: headers(false) });
  if (!r.ok) { $("source-status").textContent = await errorText(r); return; }
  const url = URL.createObjectURL(await r.blob());
  const a = el("a");
  a.href = url;
  a.download = basename(hit.source);
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  $("source-status").textContent = "已下载";
}

// Answer text with [n] turned into buttons that open source n.
function renderAnswer(node, text, sources, kb) {
  node.replaceChildren();
  const re = /\[(\d+)\]/g;
  let last = 0;
  for (let m; (m = re.exec(text)); ) {
    const n = Number(m[1]);
    if (n < 1 || n > sources.length) continue;
    node.append(text.slice(last, m.index), citeButton(sources[n - 1], n, kb));
    last = m.index + m[0].length;
  }
  node.append(text.slice(last));
}

function citeButton(hit, n, kb, label) {
  const b = el("button", "cite", label || `[${n}]`);
  b.type = "button";
  b.title = hit.source;
  b.addEventListener("click", () => showSource(hit, n, kb));
  return b;
}

function addMessage(role) {
  $("welcome").hidden = true;
  const li = el("li", `msg ${role}`);
  const body = el("div", "body");
  li.append(body);
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
  return { li, body };
}

function feedbackBar(li, record) {
  const bar = el("div", "actions");
  for (const [vote, label, title] of [["up", "👍", "有帮助"], ["down", "👎", "没帮助"]]) {
    const b = el("button", "vote", label);
    b.type = "button";
    b.title = title;
    b.dataset.vote = vote;
    b.addEventListener("click", async () => {
      const r = await fetch(kbPath(record.kb, "/feedback"), {
        method: "POST", headers: headers(),
        body: JSON.stringify({ question: record.question, answer: record.answer, vote, sources: record.sources }),
      });
      if (r.ok) {
        bar.querySelectorAll(".vote").forEach((x) => { x.disabled = true; });
        b.classList.add("chosen");
        setStatus("谢谢反馈！");
      } else setStatus(await errorText(r), true);
    });
    bar.append(b);
  }
  li.append(bar);
}

// The footer of a finished answer: source chips, mode and time, feedback buttons.
function finishAnswer(li, body, kb, turn, withFeedback) {
  renderAnswer(body, turn.answer, turn.sources, kb);
  const foot = el("div", "foot");
  const chips = el("div", "sources");
  turn.sources.forEach((hit, i) => chips.append(citeButton(hit, i + 1, kb, `[${i + 1}] ${basename(hit.source)}`)));
  const mode = { faq: "常见问题", extractive: "摘录", generative: "生成" }[turn.mode] || turn.mode;
  foot.append(chips, el("span", "mode", turn.refused ? `未找到答案 · ${turn.ms} ms` : `${mode} · ${turn.ms} ms`));
  li.append(foot);
  if (withFeedback) feedbackBar(li, { kb, question: turn.question, answer: turn.answer, sources: turn.sources });
  // After the footer is in place: the whole answer, footer included, clears the composer.
  li.scrollIntoView({ block: "end" });
}

// Parse a fetch body of server-sent events, calling onEvent(name, data) for each.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

function remember(kb, turn) {
  let chat = currentChat();
  if (!chat || chat.kb !== kb) {
    chat = { id: `c${Date.now().toString(36)}`, kb, title: turn.question.slice(0, 40), updated: 0, turns: [] };
    state.chats.push(chat);
    state.chatId = chat.id;
  }
  chat.turns = [...chat.turns, turn].slice(-MAX_TURNS);
  chat.updated = Date.now();
  saveChats();
}

async function ask(question) {
  const kb = state.kb;
  const chat = currentChat();
  const history = chat && chat.kb === kb
    ? chat.turns.filter((t) => !t.refused).slice(-4).map((t) => [t.question, t.answer]) : [];
  addMessage("user").body.textContent = question;
  const { li, body } = addMessage("assistant");
  body.classList.add("typing");
  let text = "";
  let finished = false;
  const r = await fetch(kbPath(kb, "/ask"), {
    method: "POST", headers: headers(),
    body: JSON.stringify({ question, stream: true, history }),
  });
  if (!r.ok) {
    body.classList.remove("typing");
    body.textContent = r.status === 401 ? "需要 API Key：点击右上角 ⚙ 输入。" : await errorText(r);
    li.classList.add("failed");
    li.scrollIntoView({ block: "end" });
    return;
  }
  await readEvents(r, (name, data) => {
    if (name === "token") {
      body.classList.remove("typing");
      text += data.text;
      body.textContent = text;
      li.scrollIntoView({ block: "end" });
    } else if (name === "done") {
      finished = true;
      const turn = {
        question, answer: data.answer, sources: data.sources, mode: data.mode,
        refused: data.refused, ms: Math.round(data.timings.total_ms || 0),
      };
      finishAnswer(li, body, kb, turn, true);
      remember(kb, turn);
    } else if (name === "error") {
      body.classList.remove("typing");
      body.textContent = data.detail;
      li.classList.add("failed");
    }
  });
  if (!finished) li.classList.add("failed");
}

// Show a stored conversation (or the welcome screen for a new one).
function showChat() {
  const chat = currentChat();
  $("messages").replaceChildren();
  $("welcome").hidden = Boolean(chat && chat.turns.length);
  if (!chat) return;
  if (chat.kb !== state.kb && [...$("kb").options].some((o) => o.value === chat.kb)) {
    $("kb").value = chat.kb;
    state.kb = chat.kb;
  }
  for (const turn of chat.turns) {
    addMessage("user").body.textContent = turn.question;
    const { li, body } = addMessage("assistant");
    finishAnswer(li, body, chat.kb, turn, false);
  }
}

function newChat() {
  state.chatId = "";
  localStorage.setItem("kbqa.chat", "");
  showChat();
  loadSuggestions();
  $("question").focus();
}

function showChatList() {
  const list = $("chat-list");
  list.replaceChildren();
  if (!state.chats.length) list.append(el("li", "", "还没有对话。"));
  for (const chat of state.chats) {
    const li = el("li", chat.id === state.chatId ? "current" : "");
    const open = el("button", "grow", `${chat.title}`);
    open.type = "button";
    open.title = `${chat.kb} · ${new Date(chat.updated).toLocaleString()}`;
    open.addEventListener("click", () => { state.chatId = chat.id; saveChats(); showChat(); $("chats").close(); });
    const drop = el("button", "icon", "🗑");
    drop.type = "button";
    drop.title = "删除此对话";
    drop.addEventListener("click", () => {
      state.chats = state.chats.filter((c) => c.id !== chat.id);
      if (state.chatId === chat.id) state.chatId = "";
      saveChats();
      showChatList();
      showChat();
    });
    li.append(open, el("span", "badge", chat.kb), drop);
    list.append(li);
  }
  $("chats").showModal();
}

function askForKey(why) {
  $("settings-why").textContent = why;
  $("settings").showModal();
  $("key").focus();
}

function init() {
  $("key").value = state.key;
  $("kb").addEventListener("change", () => {
    state.kb = $("kb").value;
    localStorage.setItem("kbqa.kb", state.kb);
    newChat(); // a conversation belongs to one KB
  });
  $("new-chat").addEventListener("click", newChat);
  $("open-chats").addEventListener("click", showChatList);
  $("open-settings").addEventListener("click", () => $("settings").showModal());
  $("save-key").addEventListener("click", async () => {
    state.key = $("key").value.trim();
    localStorage.setItem("kbqa.key", state.key);
    await loadKbs();
    $("settings").close();
    document.dispatchEvent(new Event("kbqa:key"));
  });
  const q = $("question");
  q.addEventListener("input", () => { q.style.height = "auto"; q.style.height = `${Math.min(q.scrollHeight, 160)}px`; });
  q.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("ask").requestSubmit(); }
  });
  $("ask").addEventListener("submit", async (e) => {
    e.preventDefault();
    const question = q.value.trim();
    if (!question || state.busy || !state.kb) return;
    state.busy = true;
    $("send").disabled = true;
    q.value = "";
    q.style.height = "auto";
    setStatus("");
    try { await ask(question); } catch (err) { setStatus(String(err), true); }
    state.busy = false;
    $("send").disabled = false;
    q.focus();
  });
  loadKbs().then(showChat).catch((e) => setStatus(String(e), true));
}

window.kbqa = { $, el, state, headers, errorText, kbPath, basename, setStatus, loadKbs, askForKey };
init();
