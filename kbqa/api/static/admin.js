// kbqa chat page, admin side: documents of a KB (list, upload with job progress, remove) and
// the feedback review. Reading needs no key on a public KB; these actions ask for one.
"use strict";

(() => {
  const { $, el, state, headers, errorText, kbPath, basename, loadKbs, askForKey } = window.kbqa;
  const STATUS = { ok: "已索引", failed: "失败" };

  function say(text, isError = false) {
    $("docs-status").textContent = text || "";
    $("docs-status").classList.toggle("error", isError);
  }

  // 401/403 on an admin action: say why and open the key dialog, instead of a bare error.
  async function refused(r) {
    if (r.status !== 401 && r.status !== 403) return false;
    const text = await errorText(r);
    say(text, true);
    askForKey(r.status === 401
      ? "此操作需要 API Key（写权限或管理员）。请输入管理员提供的密钥。"
      : `当前密钥无权执行此操作：${text}`);
    return true;
  }

  async function listDocs() {
    const rows = $("doc-rows");
    rows.replaceChildren();
    $("docs-title").textContent = `文档 · ${state.kb || "（未选择知识库）"}`;
    if (!state.kb) return;
    const r = await fetch(kbPath(state.kb, "/documents"), { headers: headers(false) });
    if (!r.ok) {
      if (!(await refused(r))) say(await errorText(r), true);
      return;
    }
    const { documents } = await r.json();
    say(documents.length ? `${documents.length} 篇文档` : "还没有文档：在上方上传。");
    for (const d of documents) {
      const tr = el("tr");
      const name = el("td", "name", d.source);
      if (d.error) name.append(el("div", "err", d.error));
      const badge = el("span", `badge ${d.status === "ok" ? "" : "failed"}`, STATUS[d.status] || d.status);
      const remove = el("button", "", "删除");
      remove.type = "button";
      remove.dataset.doc = String(d.id);
      remove.addEventListener("click", () => removeDoc(d));
      const status = el("td");
      status.append(badge);
      const actions = el("td");
      actions.append(remove);
      tr.append(name, status, el("td", "", String(d.chunks)), actions);
      rows.append(tr);
    }
  }

  async function removeDoc(doc) {
    if (!confirm(`从知识库 ${state.kb} 删除 ${basename(doc.source)}？`)) return;
    const r = await fetch(kbPath(state.kb, `/documents/${doc.id}`), { method: "DELETE", headers: headers(false) });
    if (!r.ok) {
      if (!(await refused(r))) say(await errorText(r), true);
      return;
    }
    const out = await r.json();
    say(`已删除 ${out.source}（${out.chunks_removed} 个片段）`);
    await listDocs();
    await loadKbs();
  }

  async function upload() {
    const files = $("files").files;
    if (!files.length) return say("请选择要上传的文件。", true);
    const form = new FormData();
    for (const f of files) form.append("files", f);
    const r = await fetch(kbPath(state.kb, "/documents"), { method: "POST", headers: headers(false), body: form });
    if (!r.ok) {
      if (!(await refused(r))) say(await errorText(r), true);
      return;
    }
    let job = await r.json();
    $("job").hidden = false;
    $("job-errors").replaceChildren();
    while (job.status === "queued" || job.status === "running") {
      $("job-progress").max = Math.max(1, job.files_total);
      $("job-progress").value = job.files_done;
      $("job-text").textContent = `${job.status === "queued" ? "排队中" : "处理中"}：${job.files_done}/${job.files_total} 个文件，${job.chunks} 个片段`;
      await new Promise((ok) => setTimeout(ok, 400));
      const next = await fetch(`/v1/jobs/${job.id}`, { headers: headers(false) });
      if (!next.ok) return say(await errorText(next), true);
      job = await next.json();
    }
    $("job-progress").value = $("job-progress").max;
    if (job.status !== "done") {
      $("job-text").textContent = `失败：${job.error}`;
      return;
    }
    const rep = job.report;
    const dups = rep.files_duplicate || [];
    $("job-text").textContent = `完成：新增 ${rep.files_added}，更新 ${rep.files_updated}，未变 ${rep.files_unchanged}，` +
      `重复 ${dups.length}，失败 ${rep.files_failed.length}，片段 +${rep.chunks_added}`;
    for (const f of rep.files_failed) $("job-errors").append(el("li", "", `${basename(f.path)}：${f.error}`));
    for (const d of dups) $("job-errors").append(el("li", "dup", `${basename(d.path)}：与已有的 ${d.same_as} 内容相同，未重复索引`));
    $("files").value = "";
    await listDocs();
    await loadKbs();
  }

  async function loadFeedback() {
    const list = $("feedback-list");
    list.replaceChildren();
    const r = await fetch(`${kbPath(state.kb, "/feedback")}?limit=50`, { headers: headers(false) });
    if (!r.ok) {
      if (!(await refused(r))) $("feedback-summary").textContent = await errorText(r);
      return;
    }
    const fb = await r.json();
    $("feedback-summary").textContent = `共 ${fb.total} 条：👍 ${fb.up} · 👎 ${fb.down}（最新在前；导出：kbqa feedback export --kb ${state.kb}）`;
    for (const rec of fb.records) {
      const li = el("li");
      const text = el("span", "grow fb", `${rec.vote === "up" ? "👍" : "👎"} ${rec.question} → ${rec.answer}`);
      if (rec.comment) text.append(el("div", "meta", rec.comment));
      li.append(text, el("span", "meta", new Date(rec.time * 1000).toLocaleString()));
      list.append(li);
    }
  }

  const guard = (fn) => () => fn().catch((e) => say(String(e), true));
  $("open-docs").addEventListener("click", () => {
    say("");
    $("job").hidden = true;
    $("feedback-list").replaceChildren();
    $("feedback-summary").textContent = "";
    $("docs").showModal();
    guard(listDocs)();
  });
  $("upload").addEventListener("click", guard(upload));
  $("load-feedback").addEventListener("click", guard(loadFeedback));
  document.addEventListener("kbqa:key", () => { if ($("docs").open) guard(listDocs)(); });
})();
