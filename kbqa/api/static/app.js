// kbqa chat page: plain JS, no build step. Answers stream over server-sent events.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  key: localStorage.getItem("kbqa.key") || "",
  kb: localStorage.getItem("kbqa.kb") || "",
  history: [], // [question, answer] pairs of the current KB, for follow-up questions
  busy: false,
};
const SUGGESTIONS = ["年假有几天？", "出差住宿标准是多少？", "怎么连接公司VPN？"];

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

function setStatus(text, isError = false) {
  $("status").textContent = text || "";
  $("status").classList.toggle("error", isError);
}

async function errorText(response) {
  try {
    const body = await response.json();
    const d = body.detail;
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
    setStatus(r.status === 401 ? "需要 API Key：点击右上角 ⚙ 输入。" : await errorText(r), true);
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
  state.kb = select.value;
  setStatus(kbs.length ? "" : "还没有知识库：管理员可在 ⚙ 中上传文档。");
}

function showSource(hit, n) {
  $("source-title").textContent = `[${n}] ${basename(hit.source)}`;
  $("source-path").textContent = hit.source;
  const m = hit.metadata || {};
  const parts = [];
  if (m.headings && m.headings.length) parts.push(m.headings.join(" › "));
  if (m.page) parts.push(`第 ${m.page} 页`);
  if (m.row) parts.push(`第 ${m.row} 行`);
  parts.push(`相似度 ${Number(hit.score).toFixed(3)}`);
  $("source-meta").textContent = parts.join(" · ");
  $("source-text").textContent = hit.text;
  $("source").showModal();
}

// Answer text with [n] turned into buttons that open source n.
function renderAnswer(node, text, sources) {
  node.replaceChildren();
  const re = /\[(\d+)\]/g;
  let last = 0;
  for (let m; (m = re.exec(text)); ) {
    const n = Number(m[1]);
    if (n < 1 || n > sources.length) continue;
    node.append(text.slice(last, m.index), citeButton(sources[n - 1], n));
    last = m.index + m[0].length;
  }
  node.append(text.slice(last));
}

function citeButton(hit, n, label) {
  const b = el("button", "cite", label || `[${n}]`);
  b.type = "button";
  b.title = basename(hit.source);
  b.addEventListener("click", () => showSource(hit, n));
  return b;
}

function addMessage(role) {
  $("welcome").hidden = true;
  const li = el("li", `msg ${role}`);
  const body = el("div", "body");
  li.append(body);
  $("messages").append(li);
  li.scrollIntoView({ block: "end", behavior: "smooth" });
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
      const r = await fetch(`/v1/kbs/${encodeURIComponent(record.kb)}/feedback`, {
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

async function ask(question) {
  const kb = state.kb;
  addMessage("user").body.textContent = question;
  const { li, body } = addMessage("assistant");
  body.classList.add("typing");
  const foot = el("div", "foot");
  li.append(foot);
  let sources = [];
  let text = "";
  const r = await fetch(`/v1/kbs/${encodeURIComponent(kb)}/ask`, {
    method: "POST", headers: headers(),
    body: JSON.stringify({ question, stream: true, history: state.history.slice(-4) }),
  });
  if (!r.ok) {
    body.classList.remove("typing");
    body.textContent = await errorText(r);
    li.classList.add("failed");
    return;
  }
  await readEvents(r, (name, data) => {
    if (name === "sources") sources = data;
    else if (name === "token") {
      body.classList.remove("typing");
      text += data.text;
      body.textContent = text;
      li.scrollIntoView({ block: "end" });
    } else if (name === "done") {
      text = data.answer;
      renderAnswer(body, text, data.sources);
      const chips = el("div", "sources");
      data.sources.forEach((hit, i) => chips.append(citeButton(hit, i + 1, `[${i + 1}] ${basename(hit.source)}`)));
      const mode = { faq: "常见问题", extractive: "摘录", generative: "生成" }[data.mode] || data.mode;
      const ms = Math.round(data.timings.total_ms || 0);
      foot.append(chips, el("span", "mode", data.refused ? `未找到答案 · ${ms} ms` : `${mode} · ${ms} ms`));
      state.history.push([question, text]);
      feedbackBar(li, { kb, question, answer: text, sources: data.sources });
    } else if (name === "error") {
      body.classList.remove("typing");
      body.textContent = data.detail;
      li.classList.add("failed");
    }
  });
  if (!sources.length && !text) li.classList.add("failed");
}

async function upload() {
  const files = $("files").files;
  if (!files.length) return setStatus("请选择要上传的文件。", true);
  const form = new FormData();
  for (const f of files) form.append("files", f);
  const r = await fetch(`/v1/kbs/${encodeURIComponent(state.kb)}/documents`, {
    method: "POST", headers: headers(false), body: form,
  });
  if (!r.ok) return setStatus(await errorText(r), true);
  let job = await r.json();
  $("job").hidden = false;
  while (job.status === "queued" || job.status === "running") {
    $("job-progress").max = Math.max(1, job.files_total);
    $("job-progress").value = job.files_done;
    $("job-text").textContent = `${job.status === "queued" ? "排队中" : "处理中"}：${job.files_done}/${job.files_total} 个文件，${job.chunks} 个片段`;
    await new Promise((ok) => setTimeout(ok, 500));
    const next = await fetch(`/v1/jobs/${job.id}`, { headers: headers(false) });
    if (!next.ok) return setStatus(await errorText(next), true);
    job = await next.json();
  }
  $("job-progress").value = $("job-progress").max;
  if (job.status === "done") {
    const rep = job.report;
    const failed = rep.files_failed.map((f) => `${basename(f.path)}：${f.error}`).join("；");
    $("job-text").textContent = `完成：新增 ${rep.files_added}，更新 ${rep.files_updated}，未变 ${rep.files_unchanged}，片段 +${rep.chunks_added}` + (failed ? `。失败：${failed}` : "");
    await loadKbs();
  } else $("job-text").textContent = `失败：${job.error}`;
}

function init() {
  $("key").value = state.key;
  for (const s of SUGGESTIONS) {
    const b = el("button", "chip", s);
    b.type = "button";
    b.addEventListener("click", () => { $("question").value = s; $("ask").requestSubmit(); });
    $("suggestions").append(b);
  }
  $("kb").addEventListener("change", () => {
    state.kb = $("kb").value;
    state.history = [];
    localStorage.setItem("kbqa.kb", state.kb);
  });
  $("open-settings").addEventListener("click", () => $("settings").showModal());
  $("save-key").addEventListener("click", async () => {
    state.key = $("key").value.trim();
    localStorage.setItem("kbqa.key", state.key);
    await loadKbs();
    $("settings").close();
  });
  $("upload").addEventListener("click", () => upload().catch((e) => setStatus(String(e), true)));
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
  loadKbs().catch((e) => setStatus(String(e), true));
}

init();
