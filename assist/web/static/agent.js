// 坐席助手: the live-call panel and the training replay. Every turn goes to the live API
// (POST /v1/calls/{id}/turns) with the sign-in cookie; feedback to POST /v1/calls/{id}/feedback.
"use strict";
(function () {
  const root = document.getElementById("panel");
  if (!root || !window.kefu) return;
  const cfg = JSON.parse(root.dataset.config || "{}");
  const MODE = root.dataset.mode;  // "live" | "replay"
  const esc = kefu.escapeHtml;
  const $ = (id) => document.getElementById(id);
  const ROLE_ZH = { customer: "客户", agent: "坐席" };
  const REASONS = {
    match: ["本句匹配", "客户这句话与该场景的常见问法相符"],
    context: ["上文相关", "根据本通电话前几句客户的诉求延续推荐"],
    risk: ["风险安抚", "投诉风险升高，推荐安抚、致歉或升级处置的敏感场景话术"],
  };
  const SENSITIVE_TAGS = ["敏感场景"];
  const ALERT_TYPES = { taboo: "服务忌语", complaint_risk: "投诉风险", reminder: "提醒" };
  const SEVERITY = { critical: "严重", warning: "警告", info: "提示" };
  const CALL_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$/;
  const STORE_KEY = "kefu.agent.liveCall";
  const VIEW_KEY = "kefu.agent.liveView";

  // ------------------------------------------------------------------ helpers
  function clock(date) {
    const d = date || new Date();
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
  }

  function newCallId(prefix) {
    const d = new Date();
    const p = (n) => String(n).padStart(2, "0");
    const rand = Math.random().toString(36).slice(2, 6).toUpperCase();
    const day = `${String(d.getFullYear()).slice(2)}${p(d.getMonth() + 1)}${p(d.getDate())}`;
    return `${prefix}${day}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}-${rand.slice(0, 3)}`;
  }

  // A user-facing (Chinese) message for a failed API call.
  function errText(err) {
    const status = err && err.status;
    if (status === 401) return "登录已失效，请刷新页面重新登录";
    if (status === 403) return "当前角色无权执行此操作";
    if (status === 413) return "内容太长，请缩短后再发送";
    if (status === 409) return "通话正被其他窗口同时更新，请重新发送";
    if (status === 503) return "服务暂不可用：" + (err.message || "");
    if (status === 422) return "输入有误：" + (err.message || "");
    if (status >= 500) return "服务出错，请稍后重试";
    if (!status) return "无法连接服务，请检查网络后重试";
    return err.message || "操作失败";
  }

  // Text with the given terms marked (longest first, no overlaps); every part escaped.
  function highlight(text, marks) {
    const owner = new Array(text.length).fill("");
    (marks || []).filter((m) => m && m.term).sort((a, b) => b.term.length - a.term.length).forEach((m) => {
      let i = text.indexOf(m.term);
      while (i !== -1) {
        let free = true;
        for (let j = i; j < i + m.term.length; j++) if (owner[j]) { free = false; break; }
        if (free) for (let j = i; j < i + m.term.length; j++) owner[j] = m.cls;
        i = text.indexOf(m.term, i + m.term.length);
      }
    });
    let html = "";
    let i = 0;
    while (i < text.length) {
      let j = i;
      while (j < text.length && owner[j] === owner[i]) j++;
      const part = esc(text.slice(i, j));
      html += owner[i] ? `<mark class="${owner[i]}">${part}</mark>` : part;
      i = j;
    }
    return html;
  }

  function riskClass(value) {
    if (value >= cfg.risk_threshold) return "high";
    if (value >= cfg.risk_reset) return "mid";
    return "low";
  }

  // ------------------------------------------------------------------ the panel (shared by both modes)
  const panel = {
    callId: null,
    started: false,  // a turn reached the service
    ended: false,
    nTurns: 0,
    risk: [],  // call_risk after each turn
    alertCount: 0,
    counts: { accepted: 0, dismissed: 0, used: 0 },
    queue: Promise.resolve(),
    lastCustomer: "",
    last: null,  // the last customer turn with suggestions: {r, text}
    cardStates: {},  // script id → accepted | dismissed | used (this call)
  };

  // Live mode keeps what the page shows in sessionStorage, so that a reload loses nothing.
  function saveView() {
    if (MODE !== "live" || !panel.started || panel.ended) return;
    try {
      sessionStorage.setItem(VIEW_KEY, JSON.stringify({ callId: panel.callId, counts: panel.counts, last: panel.last,
        states: panel.cardStates }));
    } catch (e) { /* storage full or off: the call itself is on the server */ }
  }

  function applyCardState(el, state) {
    if (state === "dismissed") { el.remove(); return; }
    if (state === "accepted") {
      el.classList.add("accepted");
      el.querySelectorAll("[data-act=accepted],[data-act=dismissed]").forEach((b) => { b.disabled = true; });
      setCardState(el, "已采纳");
    } else if (state === "used") {
      el.dataset.used = "1";
      setCardState(el, "已复制（记为已使用）");
    }
  }

  function setStatus(text, cls) {
    const el = $("call-status");
    el.textContent = text;
    el.className = "badge" + (cls ? " " + cls : "");
  }

  function note(html, kind) {
    const el = $("call-note");
    if (!html) { el.hidden = true; el.innerHTML = ""; return; }
    el.className = "small " + (kind || "muted");
    el.innerHTML = html;
    el.hidden = false;
  }

  function resetPanel(callId) {
    Object.assign(panel, { callId, started: false, ended: false, nTurns: 0, risk: [], alertCount: 0,
      counts: { accepted: 0, dismissed: 0, used: 0 }, queue: Promise.resolve(), lastCustomer: "", last: null,
      cardStates: {}, seriousAlerts: 0 });
    $("transcript").innerHTML = "";
    const empty = document.createElement("p");
    empty.className = "empty";
    empty.id = "transcript-empty";
    empty.textContent = MODE === "live"
      ? "选择说话人，输入一句话后按 Enter 发送。客户的话会实时匹配话术，坐席的话会检查服务忌语。"
      : "点“下一句”逐句回放，或“自动播放”。";
    $("transcript").appendChild(empty);
    $("cards").innerHTML = '<p class="empty" id="cards-empty">客户说话后，这里会显示推荐话术、匹配度和推荐理由。</p>';
    $("cards-old").innerHTML = "";
    $("cards-history").hidden = true;
    $("history-count").textContent = "0";
    $("cards-for").textContent = "";
    $("gap-box").hidden = true;
    $("cards-note").hidden = true;
    $("alerts").innerHTML = '<p class="empty" id="alerts-empty">暂无告警。坐席说出服务忌语、客户投诉风险升高时会在这里提醒。</p>';
    $("alert-count").textContent = "0";
    $("alert-count").className = "badge";
    renderRisk();
    note("");
    setStatus("未开始", "");
  }

  // --- transcript
  function addBubble(role, text) {
    const empty = $("transcript-empty");
    if (empty) empty.remove();
    const el = document.createElement("div");
    el.className = `turn ${role} pending`;
    el.innerHTML = `<span class="who">${ROLE_ZH[role]} · ${clock()}</span><div class="text">${esc(text)}</div>` +
      '<div class="turn-notes"></div>';
    el.dataset.role = role;
    $("transcript").appendChild(el);
    scrollTranscript();
    return el;
  }

  function scrollTranscript() {
    const t = $("transcript");
    t.scrollTop = t.scrollHeight;
  }

  function markBubble(el, text, marks) {
    el.querySelector(".text").innerHTML = highlight(text, marks);
  }

  function bubbleNote(el, html) {
    const notes = el.querySelector(".turn-notes");
    notes.insertAdjacentHTML("beforeend", html);
  }

  // --- sending a turn (queued: turns reach the engine in the order they were typed)
  function sendTurn(role, text) {
    const bubble = addBubble(role, text);
    const job = panel.queue.then(() => postTurn(bubble, role, text));
    panel.queue = job.catch(() => undefined);
    return job;
  }

  async function postTurn(bubble, role, text) {
    const callId = panel.callId;
    try {
      const result = await kefu.api(`/v1/calls/${encodeURIComponent(callId)}/turns`,
        { method: "POST", json: { role, text } });
      if (callId !== panel.callId) return result;  // the panel moved on to another call meanwhile
      bubble.classList.remove("pending", "failed");
      const fail = bubble.querySelector(".turn-fail");
      if (fail) fail.remove();
      if (!panel.started) {
        panel.started = true;
        onStarted();
      }
      showResult(result, bubble, text);
      return result;
    } catch (err) {
      bubble.classList.remove("pending");
      bubble.classList.add("failed");
      let fail = bubble.querySelector(".turn-fail");
      if (!fail) {
        fail = document.createElement("div");
        fail.className = "turn-fail small";
        bubble.appendChild(fail);
      }
      fail.innerHTML = `发送失败：${esc(errText(err))}<button type="button">重发</button>`;
      fail.querySelector("button").addEventListener("click", () => {
        fail.textContent = "重发中…";
        bubble.classList.add("pending");
        panel.queue = panel.queue.then(() => postTurn(bubble, role, text)).catch(() => undefined);
      });
      kefu.toast("这一句没有发送成功：" + errText(err), "error");
      throw err;
    }
  }

  function onStarted() {
    setStatus("通话中", "live");
    if (MODE === "live") live.onStarted();
  }

  // --- one reply of the engine
  function showResult(r, bubble, text) {
    panel.nTurns = r.turn + 1;
    bubble.dataset.turn = r.turn;
    bubble.querySelector(".who").textContent = `${ROLE_ZH[r.role]} · 第 ${r.turn + 1} 句 · ${clock()}`;
    const marks = [];
    for (const a of r.alerts) {
      if (a.type === "taboo") (a.findings || []).forEach((f) => marks.push({ term: f.text, cls: "bad" }));
      if (a.type === "complaint_risk") (a.triggers || []).forEach((t) => marks.push({ term: t.phrase, cls: "risk" }));
    }
    if (r.role === "customer") {
      panel.lastCustomer = text;
      const top = r.suggestions.find((s) => s.reason === "match");
      if (top) top.matched_terms.forEach((t) => marks.push({ term: t, cls: "hl" }));
      if (typeof r.risk === "number" && r.risk >= cfg.risk_reset) {
        bubbleNote(bubble, `<span class="tag risk-${riskClass(r.risk)}">本句风险 ${r.risk.toFixed(2)}</span>`);
      }
    }
    markBubble(bubble, text, marks);
    if (r.alerts.some((a) => a.type === "taboo")) bubble.classList.add("has-alert");
    if (r.used_script) {
      bubbleNote(bubble, `<span class="tag">引用话术 ${esc(r.used_script.id)} ${esc(r.used_script.scenario)}` +
        `（重合 ${Math.round(r.used_script.overlap * 100)}%）</span>`);
      const card = document.querySelector(`.sugg[data-id="${CSS.escape(r.used_script.id)}"]`);
      if (card) setCardState(card, "坐席已使用");
    }
    panel.risk.push(r.call_risk);
    renderRisk();
    r.alerts.forEach((a) => addAlert(a, r.turn, r.role, text));
    if (r.role === "customer") renderSuggestions(r, text);
    if (MODE === "replay") replay.onResult(r);
    saveView();
  }

  // --- suggestion cards
  function renderSuggestions(r, text) {
    const gap = $("gap-box");
    const cardsNote = $("cards-note");
    if (r.gap) {
      $("gap-text").innerHTML = `客户原话（第 ${r.turn + 1} 句）：${esc(text)}`;
      gap.hidden = false;
    } else if (r.suggestions.length) {
      gap.hidden = true;
    }
    if (!r.suggestions.length) {
      const old = $("cards").querySelectorAll(".sugg").length;
      cardsNote.textContent = r.gap ? (old ? "下面是之前的推荐，可能已不适用。" : "")
        : (old ? `第 ${r.turn + 1} 句没有新的推荐，下面的话术仍然适用。` : `第 ${r.turn + 1} 句没有匹配的话术。`);
      cardsNote.hidden = !cardsNote.textContent;
      return;
    }
    cardsNote.hidden = true;
    const current = $("cards");
    const previous = Array.from(current.querySelectorAll(".sugg"));
    if (previous.length) {
      const old = $("cards-old");
      previous.reverse().forEach((c) => old.prepend(c));
      $("history-count").textContent = old.querySelectorAll(".sugg").length;
      $("cards-history").hidden = false;
    }
    current.innerHTML = "";
    r.suggestions.forEach((s) => current.appendChild(card(s, r, text)));
    panel.last = { r, text };
    $("cards-for").textContent = `客户第 ${r.turn + 1} 句 · ${clock()}`;
  }

  function card(s, r, text) {
    const el = document.createElement("article");
    const sensitive = s.tags.some((t) => SENSITIVE_TAGS.includes(t)) || s.reason === "risk";
    el.className = "sugg" + (s.confident ? " confident" : "") + (sensitive ? " sensitive" : "");
    el.dataset.id = s.id;
    el.dataset.call = panel.callId;
    el.dataset.script = s.script;
    const pct = Math.round(s.score * 100);
    const [reasonName, reasonWhy] = REASONS[s.reason] || [s.reason, ""];
    const tags = [s.category ? `<span class="tag">${esc(s.category)}</span>` : ""]
      .concat(s.tags.map((t) => `<span class="tag${SENSITIVE_TAGS.includes(t) ? " sensitive" : ""}">${esc(t)}</span>`));
    if (sensitive && !s.tags.some((t) => SENSITIVE_TAGS.includes(t))) tags.push('<span class="tag sensitive">敏感场景</span>');
    let why = `<span class="reason reason-${esc(s.reason)}">${esc(reasonName)}</span>${esc(reasonWhy)}`;
    if (s.matched_terms.length) {
      const terms = s.matched_terms.map((t) => `<mark class="hl">${esc(t)}</mark>`).join(" ");
      why += `<br>命中词：${terms}<br>客户原话：${highlight(text, s.matched_terms.map((t) => ({ term: t, cls: "hl" })))}`;
    } else if (s.reason === "risk") {
      const triggers = r.alerts.filter((a) => a.type === "complaint_risk").flatMap((a) => a.triggers || []);
      if (triggers.length) why += `<br>风险信号：${triggers.map((t) => `<mark class="risk">${esc(t.phrase)}</mark>`).join(" ")}`;
    }
    el.innerHTML = `
      <header class="sugg-head">
        <span class="sugg-scenario">${esc(s.scenario)}</span>${tags.join("")}
        <span class="sugg-id muted small">${esc(s.id)}</span>
      </header>
      <div class="sugg-score" title="排序分 ${s.score.toFixed(3)}，检索校准分 ${s.base_score.toFixed(3)}">
        <span class="meter"><span style="width:${pct}%"></span></span>
        <span>匹配度 ${pct}%</span>
        <span class="badge ${s.confident ? "confident" : "tentative"}">${s.confident ? "高置信" : "仅供参考"}</span>
      </div>
      <p class="sugg-script">${esc(s.script)}</p>
      <div class="sugg-why small"><b>推荐理由：</b>${why}</div>
      <div class="sugg-actions">
        <button type="button" data-act="copy" title="复制话术到剪贴板，并记为“已使用”">复制</button>
        <button type="button" data-act="accepted" class="primary">采纳</button>
        <button type="button" data-act="dismissed">忽略</button>
        <span class="sugg-state" aria-live="polite"></span>
      </div>`;
    if (!cfg.feedback) {
      el.querySelectorAll("[data-act=accepted],[data-act=dismissed]").forEach((b) => {
        b.disabled = true;
        b.title = "服务未配置反馈库";
      });
    }
    return el;
  }

  function setCardState(el, text) {
    const st = el.querySelector(".sugg-state");
    if (st) st.textContent = "✓ " + text;
  }

  async function feedback(el, action) {
    const callId = el.dataset.call;
    return kefu.api(`/v1/calls/${encodeURIComponent(callId)}/feedback`,
      { method: "POST", json: { script_id: el.dataset.id, action } });
  }

  root.addEventListener("click", async (ev) => {
    const btn = ev.target.closest(".sugg-actions button");
    if (!btn) return;
    const el = btn.closest(".sugg");
    const act = btn.dataset.act;
    if (act === "copy") {
      await kefu.copy(el.dataset.script);
      if (!cfg.feedback || el.dataset.used) {
        kefu.toast("话术已复制");
        return;
      }
      try {
        await feedback(el, "used");
        panel.counts.used++;
        if (!panel.cardStates[el.dataset.id]) panel.cardStates[el.dataset.id] = "used";
        applyCardState(el, "used");
        saveView();
        kefu.toast("话术已复制，已记为“已使用”");
      } catch (err) {
        kefu.toast("话术已复制，但反馈没有记录：" + errText(err), "error");
      }
      return;
    }
    btn.disabled = true;
    try {
      await feedback(el, act);
    } catch (err) {
      btn.disabled = false;
      kefu.toast("反馈没有记录：" + errText(err), "error");
      return;
    }
    panel.counts[act]++;
    if (el.dataset.call === panel.callId) panel.cardStates[el.dataset.id] = act;
    saveView();
    if (act === "accepted") {
      applyCardState(el, "accepted");
      kefu.toast(`已采纳：${el.querySelector(".sugg-scenario").textContent}`);
    } else {
      el.classList.add("leaving");
      kefu.toast(`已忽略：${el.querySelector(".sugg-scenario").textContent}（已记录反馈）`);
      setTimeout(() => {
        const list = el.parentElement;
        el.remove();
        if (list && list.id === "cards-old") {
          const n = list.querySelectorAll(".sugg").length;
          $("history-count").textContent = n;
          if (!n) $("cards-history").hidden = true;
        } else if (list && list.id === "cards" && !list.querySelector(".sugg")) {
          list.innerHTML = '<p class="empty" id="cards-empty">推荐已全部处理，客户下一句后会更新。</p>';
        }
      }, 200);
    }
  });

  // --- alerts
  function addAlert(a, turn, role, text, when) {
    const empty = $("alerts-empty");
    if (empty) empty.remove();
    panel.alertCount++;
    const count = $("alert-count");
    count.textContent = panel.alertCount;
    if (a.severity !== "info") panel.seriousAlerts = (panel.seriousAlerts || 0) + 1;
    count.className = "badge sev-" + (panel.seriousAlerts ? "critical" : "info");
    const el = document.createElement("div");
    const cls = a.severity === "critical" ? "" : (a.severity === "info" ? " info" : " warn");
    el.className = "alert agent-alert" + cls;
    el.dataset.type = a.type;
    let quote = "";
    if (text && a.type === "taboo") {
      quote = highlight(text, (a.findings || []).map((f) => ({ term: f.text, cls: "bad" })));
    } else if (text && a.type === "complaint_risk") {
      quote = highlight(text, (a.triggers || []).map((t) => ({ term: t.phrase, cls: "risk" })));
    }
    let extra = "";
    if (a.type === "taboo" && a.findings && a.findings.length) {
      extra = a.findings.map((f) => `<span class="tag">${esc(f.category || "忌语")}：${esc(f.text)}</span>`).join("");
    }
    el.innerHTML = `
      <div class="alert-head"><b>${esc(ALERT_TYPES[a.type] || a.type)}</b>
        <span class="badge sev-${esc(a.severity)}">${esc(SEVERITY[a.severity] || a.severity)}</span>
        <span class="muted small">第 ${turn + 1} 句${when === "" ? "" : " · " + (when || clock())}</span></div>
      <div class="alert-msg">${esc(a.message)}</div>
      ${quote ? `<div class="quote small">${esc(ROLE_ZH[role] || "")}：${quote}</div>` : ""}
      ${extra ? `<div class="small">${extra}</div>` : ""}`;
    $("alerts").prepend(el);
    if (a.severity !== "info") {
      const box = document.querySelector(".alerts-card");
      box.classList.remove("flash");
      void box.offsetWidth;
      box.classList.add("flash");
    }
  }

  // --- risk meter and trend
  function renderRisk() {
    const value = panel.risk.length ? panel.risk[panel.risk.length - 1] : 0;
    const level = riskClass(value);
    $("risk-value").textContent = value.toFixed(2);
    $("risk-value").className = "risk-" + level;
    $("risk-level").textContent = { low: "低", mid: "中", high: "高" }[level];
    $("risk-level").className = "badge" + (level === "high" ? " sev-critical" : level === "mid" ? " sev-warning" : "");
    const bar = $("risk-bar");
    bar.style.width = Math.round(Math.min(1, value) * 100) + "%";
    bar.className = level;
    $("risk-trend").innerHTML = trendSvg(panel.risk);
  }

  function trendSvg(series) {
    const W = 320, H = 84, L = 26, R = 8, T = 8, B = 18;
    const x = (i) => L + (series.length <= 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (series.length - 1));
    const y = (v) => T + (1 - Math.min(1, Math.max(0, v))) * (H - T - B);
    const thr = y(cfg.risk_threshold);
    let svg = `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="投诉风险走势"><title>投诉风险走势（每句之后）</title>`;
    svg += `<line x1="${L}" y1="${y(0)}" x2="${W - R}" y2="${y(0)}" stroke="#d9e2ec"/>`;
    svg += `<line x1="${L}" y1="${y(1)}" x2="${W - R}" y2="${y(1)}" stroke="#edf2f7"/>`;
    svg += `<line x1="${L}" y1="${thr}" x2="${W - R}" y2="${thr}" stroke="#c53030" stroke-dasharray="4 3"/>`;
    svg += `<text x="2" y="${y(1) + 4}" font-size="9" fill="#616e7c">1.0</text>`;
    svg += `<text x="2" y="${thr + 3}" font-size="9" fill="#c53030">${cfg.risk_threshold.toFixed(1)}</text>`;
    svg += `<text x="2" y="${y(0) + 3}" font-size="9" fill="#616e7c">0</text>`;
    if (!series.length) {
      svg += `<text x="${W / 2}" y="${H / 2}" font-size="11" text-anchor="middle" fill="#616e7c">通话开始后显示每句之后的风险</text>`;
      return svg + "</svg>";
    }
    const pts = series.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    svg += `<polyline points="${pts}" fill="none" stroke="#00706b" stroke-width="2"/>`;
    series.forEach((v, i) => {
      const color = v >= cfg.risk_threshold ? "#c53030" : (v >= cfg.risk_reset ? "#b7791f" : "#00706b");
      svg += `<circle cx="${x(i).toFixed(1)}" cy="${y(v).toFixed(1)}" r="2.8" fill="${color}"><title>第 ${i + 1} 句后：${v.toFixed(2)}</title></circle>`;
    });
    svg += `<text x="${L}" y="${H - 4}" font-size="9" fill="#616e7c">第 1 句</text>`;
    if (series.length > 1) svg += `<text x="${W - R}" y="${H - 4}" font-size="9" text-anchor="end" fill="#616e7c">第 ${series.length} 句</text>`;
    return svg + "</svg>";
  }

  // --- end of call
  async function endCall() {
    await panel.queue;
    const id = panel.callId;
    let ended = null;
    if (panel.started) {
      try {
        ended = await kefu.api(`/v1/calls/${encodeURIComponent(id)}`, { method: "DELETE" });
      } catch (err) {
        if (err.status !== 404) {
          kefu.toast("结束通话失败：" + errText(err), "error");
          return false;
        }
      }
    }
    panel.ended = true;
    setStatus("已结束", "ended");
    const n = ended ? ended.n_turns : panel.nTurns;
    const c = panel.counts;
    note(`<div class="ok-box summary-box">通话 <b>${esc(id)}</b> 已结束：共 ${n} 句；采纳 ${c.accepted} 条、` +
      `复制使用 ${c.used} 条、忽略 ${c.dismissed} 条；告警 ${panel.alertCount} 条；` +
      `最高投诉风险 ${Math.max(0, ...panel.risk).toFixed(2)}。</div>`, "");
    return true;
  }

  // Rebuild the panel from GET /v1/calls/{id} (after a page reload): turns, alerts, risk trend.
  function restoreFrom(state) {
    const offset = state.n_turns - state.turns.length;
    const byTurn = {};
    (state.alerts || []).forEach((a) => { (byTurn[a.turn] = byTurn[a.turn] || []).push(a); });
    let callRisk = 0;
    const custRisks = state.risk_trajectory || [];
    let k = Math.max(0, custRisks.length - state.turns.filter((t) => t.role === "customer").length);
    state.turns.forEach((t, i) => {
      const turn = offset + i;
      const bubble = addBubble(t.role, t.text);
      bubble.classList.remove("pending");
      bubble.dataset.turn = turn;
      bubble.querySelector(".who").textContent = `${ROLE_ZH[t.role]} · 第 ${turn + 1} 句`;
      const alerts = byTurn[turn] || [];
      const marks = [];
      alerts.forEach((a) => {
        (a.findings || []).forEach((f) => marks.push({ term: f.text, cls: "bad" }));
        (a.triggers || []).forEach((tr) => marks.push({ term: tr.phrase, cls: "risk" }));
        addAlert(a, turn, t.role, t.text, "");
      });
      markBubble(bubble, t.text, marks);
      if (t.role === "customer") {
        callRisk = Math.max(custRisks[k] || 0, callRisk * cfg.risk_decay);
        k++;
        panel.lastCustomer = t.text;
      }
      panel.risk.push(callRisk);
    });
    if (panel.risk.length) panel.risk[panel.risk.length - 1] = state.call_risk;
    panel.nTurns = state.n_turns;
    panel.started = true;
    renderRisk();
    setStatus("通话中", "live");
  }

  // ------------------------------------------------------------------ live mode
  const live = {
    role: "customer",
    init() {
      const input = $("turn-text");
      const idBox = $("call-id");
      this.setRole("customer");
      document.querySelectorAll(".role-btn").forEach((b) => b.addEventListener("click", () => {
        this.setRole(b.dataset.role);
        input.focus();
      }));
      document.addEventListener("keydown", (ev) => {
        if (ev.altKey && (ev.key === "1" || ev.key === "2")) {
          ev.preventDefault();
          this.setRole(ev.key === "1" ? "customer" : "agent");
          input.focus();
        }
      });
      input.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" && !ev.isComposing && ev.keyCode !== 229) {
          ev.preventDefault();
          this.send();
        }
      });
      $("composer").addEventListener("submit", (ev) => { ev.preventDefault(); this.send(); });
      $("end-call").addEventListener("click", async () => {
        $("end-call").disabled = true;
        if (await endCall()) {
          sessionStorage.removeItem(STORE_KEY);
          sessionStorage.removeItem(VIEW_KEY);
          input.disabled = true;
          $("composer").querySelector("[type=submit]").disabled = true;
          $("new-call").classList.add("primary");
          $("new-call").focus();
        } else {
          $("end-call").disabled = false;
        }
      });
      $("new-call").addEventListener("click", async () => {
        if (panel.started && !panel.ended) {
          if (!(await endCall())) return;
          sessionStorage.removeItem(STORE_KEY);
          sessionStorage.removeItem(VIEW_KEY);
        }
        this.fresh();
        input.focus();
      });
      const saved = sessionStorage.getItem(STORE_KEY);
      if (saved) {
        this.fresh(saved);
        this.restore(saved);
      } else {
        this.fresh();
      }
      input.focus();
    },
    setRole(role) {
      this.role = role;
      document.querySelectorAll(".role-btn").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.role === role)));
      $("turn-text").placeholder = role === "customer" ? "输入客户说的话…" : "输入坐席说的话…";
    },
    fresh(id) {
      resetPanel(id || newCallId("C"));
      const idBox = $("call-id");
      idBox.value = panel.callId;
      idBox.readOnly = false;
      $("end-call").disabled = true;
      $("new-call").classList.remove("primary");
      $("turn-text").disabled = false;
      $("composer").querySelector("[type=submit]").disabled = false;
    },
    async restore(id) {
      try {
        const state = await kefu.api(`/v1/calls/${encodeURIComponent(id)}`);
        restoreFrom(state);
        this.onStarted();
        let view = null;
        try { view = JSON.parse(sessionStorage.getItem(VIEW_KEY) || "null"); } catch (e) { view = null; }
        if (view && view.callId === id) {
          panel.counts = Object.assign(panel.counts, view.counts || {});
          panel.cardStates = view.states || {};
          if (view.last) {
            renderSuggestions(view.last.r, view.last.text);
            $("cards").querySelectorAll(".sugg").forEach((el) => {
              const st = panel.cardStates[el.dataset.id];
              if (st) applyCardState(el, st);
            });
          }
        }
        note(`已恢复进行中的通话（共 ${state.n_turns} 句）。`, "muted");
      } catch (err) {
        sessionStorage.removeItem(STORE_KEY);
        sessionStorage.removeItem(VIEW_KEY);
        this.fresh();
        if (err.status !== 404) kefu.toast("无法恢复上次的通话：" + errText(err), "error");
      }
    },
    onStarted() {
      $("call-id").readOnly = true;
      $("end-call").disabled = false;
      sessionStorage.setItem(STORE_KEY, panel.callId);
    },
    send() {
      const input = $("turn-text");
      const text = input.value.trim();
      if (panel.ended) {
        kefu.toast("本通电话已结束，请点“新通话”", "error");
        return;
      }
      if (!text) {
        kefu.toast("请输入这一句的内容", "error");
        input.focus();
        return;
      }
      if (!panel.started && panel.nTurns === 0) {
        const id = $("call-id").value.trim();
        if (!CALL_ID_RE.test(id)) {
          kefu.toast("通话编号只能包含字母、数字和 . _ : -，以字母或数字开头，最多 128 位", "error");
          $("call-id").focus();
          return;
        }
        panel.callId = id;
        $("call-id").readOnly = true;  // locked once the first turn is on its way
      }
      input.value = "";
      sendTurn(this.role, text).catch(() => {
        if (!panel.started) $("call-id").readOnly = false;
      });
      input.focus();
    },
  };

  // ------------------------------------------------------------------ replay mode
  const replay = {
    calls: [],
    call: null,
    pos: 0,
    playing: false,
    timer: null,
    init() {
      $("replay-upload").addEventListener("submit", (ev) => { ev.preventDefault(); this.upload(); });
      $("replay-file").addEventListener("change", () => {
        const f = $("replay-file").files[0];
        $("replay-filename").textContent = f ? `${f.name}（${(f.size / 1024).toFixed(1)} KB）` : "未选择文件";
      });
      $("replay-call").addEventListener("change", () => this.pick($("replay-call").value));
      $("replay-next").addEventListener("click", () => { this.stop(); this.next(); });
      $("replay-auto").addEventListener("click", () => (this.playing ? this.stop() : this.play()));
      $("replay-restart").addEventListener("click", () => this.pick($("replay-call").value));
      resetPanel(null);
    },
    async upload() {
      const file = $("replay-file").files[0];
      const box = $("replay-result");
      if (!file) {
        box.innerHTML = '<div class="error-box">请先选择要回放的通话文件。</div>';
        return;
      }
      const form = new FormData();
      form.append("file", file);
      box.innerHTML = '<p class="muted small">正在读取…</p>';
      let data = null;
      let status = 0;
      try {
        const res = await fetch("/console/agent/api/replay", { method: "POST", body: form, credentials: "same-origin" });
        status = res.status;
        const raw = await res.text();
        try { data = JSON.parse(raw); } catch (e) { data = { message: raw || res.statusText }; }
      } catch (e) {
        box.innerHTML = '<div class="error-box">无法连接服务，请检查网络后重试。</div>';
        return;
      }
      const list = (errors, left) => {
        if (!errors || !errors.length) return "";
        const items = errors.map((e) => `<li>${esc(e.text)}</li>`).join("");
        return `<ul class="replay-errors">${items}</ul>${left ? `<div>另有 ${left} 处问题未列出。</div>` : ""}`;
      };
      if (status !== 200) {
        const msg = status === 401 ? "登录已失效，请刷新页面重新登录" : status === 403 ? "当前角色无权使用培训回放"
          : (data && (data.message || data.detail)) || "载入失败";
        box.innerHTML = `<div class="error-box"><b>无法载入：</b>${esc(typeof msg === "string" ? msg : JSON.stringify(msg))}` +
          `${list(data && data.errors, data && data.errors_left_out)}</div>`;
        return;
      }
      let html = `<div class="ok-box">已载入 <b>${esc(data.filename)}</b>：${data.calls.length} 通通话可回放` +
        (data.n_more ? `（文件较大，只载入前 ${data.calls.length} 通，另有 ${data.n_more} 通未载入）` : "") + "。</div>";
      if (data.n_bad) {
        html += `<div class="warn-box"><b>${data.n_bad} 通通话格式有误，已跳过：</b>${list(data.errors, data.errors_left_out)}</div>`;
      }
      box.innerHTML = html;
      this.calls = data.calls;
      const sel = $("replay-call");
      sel.innerHTML = data.calls.map((c, i) => {
        const first = (c.turns.find((t) => t.role === "customer") || c.turns[0]).text;
        return `<option value="${i}">${esc(c.call_id)} · ${c.n_turns} 句 · ${esc(first.slice(0, 18))}</option>`;
      }).join("");
      sel.disabled = false;
      this.pick("0");
    },
    async pick(value) {
      this.stop();
      if (panel.started && !panel.ended) await endCall();
      const call = this.calls[Number(value)];
      if (!call) return;
      this.call = call;
      this.pos = 0;
      const safe = call.call_id.replace(/[^A-Za-z0-9._:\-]/g, "_").slice(0, 40);
      resetPanel(`TR-${safe}-${Date.now().toString(36).slice(-6).toUpperCase()}`);
      note(`回放通话编号 <code>${esc(panel.callId)}</code> · 源文件第 ${call.line} 行` +
        (call.agent_id ? ` · 坐席 ${esc(call.agent_id)}` : "") + (call.channel ? ` · ${esc(call.channel)}` : ""), "muted");
      const expect = $("replay-expect");
      if (call.script_id || call.scenario) {
        expect.hidden = false;
        expect.className = "small";
        expect.textContent = `标注场景：${call.scenario || ""}${call.script_id ? `（${call.script_id}）` : ""} · 尚未出现在推荐中`;
      } else {
        expect.hidden = true;
      }
      $("replay-next").disabled = false;
      $("replay-auto").disabled = false;
      $("replay-restart").disabled = false;
      this.progress();
    },
    progress() {
      const n = this.call ? this.call.turns.length : 0;
      const nextTurn = this.call && this.pos < n ? this.call.turns[this.pos] : null;
      $("replay-progress").textContent = !this.call ? "" : nextTurn
        ? `已播放 ${this.pos} / ${n} 句 · 下一句：${ROLE_ZH[nextTurn.role]}` : `已播放 ${n} / ${n} 句 · 回放结束`;
      $("replay-next").disabled = !nextTurn;
      $("replay-auto").disabled = !nextTurn && !this.playing;
    },
    async next() {
      const call = this.call;
      if (!call || this.pos >= call.turns.length) return false;
      const t = call.turns[this.pos];
      this.pos++;  // taken at once: quick clicks queue their turns in order
      this.progress();
      try {
        await sendTurn(t.role, t.text);
      } catch (err) {
        this.stop();  // the failed turn's bubble offers 重发
        return false;
      }
      if (this.pos >= call.turns.length && call === this.call && !panel.ended) {
        this.stop();
        await endCall();
        this.progress();
      }
      return true;
    },
    delay() {
      const speed = Number($("replay-speed").value) || 1;
      const turns = this.call.turns;
      const prev = turns[this.pos - 1];
      const nxt = turns[this.pos];
      let s = 1.8;
      if (prev && nxt && typeof prev.start === "number" && typeof nxt.start === "number") {
        s = Math.min(8, Math.max(0.4, nxt.start - prev.start));
      }
      return (s / speed) * 1000;
    },
    async play() {
      if (!this.call) return;
      this.playing = true;
      $("replay-auto").textContent = "暂停";
      $("replay-auto").classList.add("primary");
      const step = async () => {
        if (!this.playing) return;
        const ok = await this.next();
        if (ok && this.playing && this.pos < this.call.turns.length) this.timer = setTimeout(step, this.delay());
        else this.stop();
      };
      step();
    },
    stop() {
      this.playing = false;
      clearTimeout(this.timer);
      $("replay-auto").textContent = "自动播放";
      $("replay-auto").classList.remove("primary");
      this.progress();
    },
    onResult(r) {
      const call = this.call;
      if (!call || !(call.script_id || call.scenario)) return;
      const hit = r.suggestions.find((s) => (call.script_id && s.id === call.script_id) ||
        (call.scenario && s.scenario === call.scenario));
      const expect = $("replay-expect");
      if (hit && !expect.classList.contains("hit")) {
        expect.classList.add("hit");
        expect.textContent = `✓ 标注场景“${hit.scenario}”（${hit.id}）在第 ${r.turn + 1} 句后出现在推荐中`;
      }
    },
  };

  if (MODE === "live") live.init();
  else replay.init();
  window.kefuAgentPanel = { panel, sendTurn, endCall };
})();
