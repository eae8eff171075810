// kefu console, 质检 pages: upload with progress, job progress polling, verdicts, appeals and decisions.
"use strict";
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const esc = (s) => window.kefu.escapeHtml(s);

  // ------------------------------------------------------------ job progress panel
  const panel = $("#job-panel");
  let pollTimer = null;

  function renderJob(job) {
    if (!panel) return;
    panel.hidden = false;
    panel.dataset.job = job.id;
    panel.dataset.state = job.state;
    $(".job-id", panel).textContent = job.id;
    $(".job-file", panel).textContent = job.filename || "";
    const state = $(".job-state", panel);
    state.textContent = job.state_name;
    state.className = "badge job-state shrink state-" + job.state;
    const pct = job.percent || 0;
    const meter = $(".job-meter", panel);
    meter.setAttribute("aria-valuenow", String(pct));
    $(".job-meter span", panel).style.width = pct + "%";
    const total = job.total === null || job.total === undefined ? "…" : job.total;
    let progress = `已处理 ${job.done || 0} / ${total} 通（${pct}%），无法评分 ${job.errors || 0} 行`;
    if (job.state === "done" && job.picked !== undefined && job.picked !== null) {
      progress += `，抽中 ${job.picked} 通需人工复核`;
    }
    $(".job-progress", panel).textContent = progress;
    const msg = $(".job-message", panel);
    msg.textContent = job.message || "";
    msg.className = "job-message small " + (job.state === "failed" || job.state === "interrupted" ? "error-box"
      : job.state === "done" ? "ok-box" : job.state === "cancelled" ? "warn-box" : "muted");
    const results = $(".job-results", panel);
    results.hidden = job.state !== "done";
    results.href = "/console/qa/?job=" + encodeURIComponent(job.id);
    const dl = $(".job-download", panel);
    dl.hidden = !job.has_output;
    dl.href = "/console/qa/jobs/" + encodeURIComponent(job.id) + "/download";
    const resume = $(".job-resume", panel);
    if (resume) resume.hidden = !["interrupted", "cancelled", "failed"].includes(job.state);
    const cancel = $(".job-cancel", panel);
    if (cancel) cancel.hidden = !job.active;
    const errs = job.error_lines || [];
    const box = $(".job-errors", panel);
    box.hidden = errs.length === 0;
    $(".job-errors tbody", panel).innerHTML = errs.map((e) =>
      `<tr><td class="num">${esc(e.line === null ? "–" : e.line)}</td><td>${esc(e.call_id || "–")}</td>` +
      `<td><strong>${esc(e.where)}</strong>：${esc(e.error)}</td></tr>`).join("");
  }

  async function poll(jobId) {
    clearTimeout(pollTimer);
    try {
      const job = await window.kefu.api("/console/qa/api/jobs/" + encodeURIComponent(jobId));
      renderJob(job);
      if (job.active) {
        pollTimer = setTimeout(() => poll(jobId), 700);
      } else {
        if (job.state === "done") window.kefu.toast("评分完成");
        refreshRecent();
      }
    } catch (err) {
      window.kefu.toast("无法获取任务进度：" + err.message, "error");
      pollTimer = setTimeout(() => poll(jobId), 3000);
    }
  }

  // The upload page's list of recent jobs, refreshed when a job ends.
  async function refreshRecent() {
    const box = $("#recent-jobs");
    if (!box) return;
    try {
      const res = await fetch(location.pathname, { credentials: "same-origin" });
      const doc = new DOMParser().parseFromString(await res.text(), "text/html");
      const fresh = doc.getElementById("recent-jobs");
      if (fresh) box.innerHTML = fresh.innerHTML;
    } catch (e) { /* the list stays as it was */ }
  }

  if (panel) {
    if (panel.dataset.job) poll(panel.dataset.job);
    panel.addEventListener("click", async (ev) => {
      const btn = ev.target.closest("button");
      if (!btn || !panel.dataset.job) return;
      const action = btn.classList.contains("job-resume") ? "resume" : btn.classList.contains("job-cancel") ? "cancel" : null;
      if (!action) return;
      if (action === "cancel" && !window.confirm("确定取消该评分任务？已评分的部分会保留，之后可以继续。")) return;
      btn.disabled = true;
      try {
        renderJob(await window.kefu.api(`/console/qa/api/jobs/${encodeURIComponent(panel.dataset.job)}/${action}`,
          { method: "POST" }));
        poll(panel.dataset.job);
      } catch (err) {
        window.kefu.toast(err.message, "error");
      } finally {
        btn.disabled = false;
      }
    });
  }

  // ------------------------------------------------------------ upload
  const form = $("#upload-form");
  if (form) {
    const input = $("#file");
    const showName = () => {
      const f = input.files[0];
      $("#file-name").textContent = f ? `${f.name}（${(f.size / 1024).toFixed(1)} KB）` : "未选择文件";
    };
    input.addEventListener("change", showName);
    form.addEventListener("reset", () => setTimeout(showName, 0));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const errorBox = $("#upload-error");
      errorBox.hidden = true;
      const file = $("#file").files[0];
      if (!file) { errorBox.textContent = "请选择要上传的通话文件"; errorBox.hidden = false; return; }
      const data = new FormData(form);
      const button = $("#upload-button");
      const note = $("#upload-note");
      button.disabled = true;
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/console/qa/api/jobs");
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) note.textContent = `上传中 ${Math.round(100 * e.loaded / e.total)}%`;
      };
      xhr.onload = () => {
        button.disabled = false;
        note.textContent = "";
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
        if (xhr.status >= 200 && xhr.status < 300 && body) {
          form.reset();
          renderJob(body);
          poll(body.id);
          history.replaceState(null, "", "/console/qa/upload?job=" + encodeURIComponent(body.id));
          return;
        }
        let message = (body && (body.message || body.detail)) || xhr.statusText;
        if (xhr.status === 413) message = "文件太大，请拆分后分批上传";
        else if (xhr.status === 403) message = "您的角色无权上传（需要 qa:write）";
        else if (xhr.status === 401) message = "登录已过期，请重新登录";
        errorBox.textContent = "上传失败：" + message;
        errorBox.hidden = false;
      };
      xhr.onerror = () => {
        button.disabled = false;
        note.textContent = "";
        errorBox.textContent = "上传失败：无法连接服务器";
        errorBox.hidden = false;
      };
      note.textContent = "上传中…";
      xhr.send(data);
    });
    const params = new URLSearchParams(location.search);
    if (params.get("job") && panel) poll(params.get("job"));
  }

  // ------------------------------------------------------------ verdicts and manual score
  async function send(path, json, okMessage) {
    try {
      await window.kefu.api(path, { method: "POST", json });
      window.kefu.toast(okMessage);
      setTimeout(() => location.reload(), 400);
      return true;
    } catch (err) {
      window.kefu.toast(err.message, "error");
      return false;
    }
  }

  const review = $("#review-form");
  if (review) {
    review.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const call = review.dataset.call;
      const verdicts = [];
      review.querySelectorAll("tr[data-hit]").forEach((row) => {
        const hit = Number(row.dataset.hit);
        const picked = row.querySelector(`input[name="v${hit}"]:checked`);
        if (!picked) return;
        const note = row.querySelector(`input[name="n${hit}"]`);
        verdicts.push({ hit, correct: picked.value === "true", note: note && note.value.trim() ? note.value.trim() : null });
      });
      const scoreText = (review.elements.score && review.elements.score.value || "").trim();
      const fatalText = review.elements.fatal ? review.elements.fatal.value : "";
      const comment = review.elements.comment ? review.elements.comment.value.trim() : "";
      const body = { verdicts, comment: comment || null };
      if (scoreText !== "") {
        const score = Number(scoreText);
        if (!Number.isFinite(score) || score < 0 || score > 100) {
          window.kefu.toast("人工评分应在 0–100 之间", "error");
          return;
        }
        body.score = score;
      }
      if (fatalText) body.fatal = fatalText === "true";
      if (!verdicts.length && body.score === undefined && !comment) {
        window.kefu.toast("请先对命中选择“确认”或“误报”，或填写人工评分", "error");
        return;
      }
      const btn = review.querySelector("button[type=submit]");
      btn.disabled = true;
      if (!await send(`/console/qa/api/calls/${encodeURIComponent(call)}/review`, body, "复核结论已保存")) btn.disabled = false;
    });
  }

  // ------------------------------------------------------------ appeal and decision
  const appeal = $("#appeal-form");
  if (appeal) {
    appeal.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const reason = appeal.elements.reason.value.trim();
      if (!reason) { window.kefu.toast("请填写申诉理由", "error"); return; }
      const btn = appeal.querySelector("button[type=submit]");
      btn.disabled = true;
      if (!await send(`/console/qa/api/calls/${encodeURIComponent(appeal.dataset.call)}/appeals`, { reason },
        "申诉已提交")) btn.disabled = false;
    });
  }

  const decision = $("#decision-form");
  if (decision) {
    decision.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const outcome = decision.elements.outcome.value;
      const scoreText = decision.elements.final_score.value.trim();
      const body = { outcome, note: decision.elements.note.value.trim() || null };
      if (scoreText !== "") body.final_score = Number(scoreText);
      if (outcome === "adjusted" && scoreText === "") {
        window.kefu.toast("“调整得分”需要填写最终得分", "error");
        return;
      }
      const btn = decision.querySelector("button[type=submit]");
      btn.disabled = true;
      if (!await send(`/console/qa/api/calls/${encodeURIComponent(decision.dataset.call)}/decision`, body,
        "裁定已保存")) btn.disabled = false;
    });
  }
})();
