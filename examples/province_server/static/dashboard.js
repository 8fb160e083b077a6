// tcs province server dashboard: vanilla JS over the JSON API (no framework, no CDN).
"use strict";
(function () {
  const boot = JSON.parse(document.getElementById("boot").textContent);
  const t = boot.t, lang = boot.lang, session = boot.session;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const main = document.getElementById("main");
  const perms = new Set(session.permissions);

  function tr(key, vars) {
    let s = t[key] || key;
    for (const k in vars || {}) s = s.replace("{" + k + "}", vars[k]);
    return s;
  }
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  function show(text, isError) {
    const m = document.getElementById("message");
    m.textContent = text;
    m.className = isError ? "error" : "ok";
    m.hidden = false;
  }
  async function api(method, path, body) {
    const opts = { method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
    if (method !== "GET") {
      opts.headers["Content-Type"] = "application/json";
      opts.headers["X-CSRF-Token"] = csrf;
      opts.body = JSON.stringify(body || {});
    }
    const sep = path.includes("?") ? "&" : "?";
    const r = await fetch(path + sep + "lang=" + lang, opts);
    if (r.status === 204) return null;
    if (r.status === 401) {
      // The session ended (logged out in another tab, expired): back to the login page, and
      // leave the caller waiting instead of failing half-way through a refresh.
      window.location.assign("/login?lang=" + lang);
      return new Promise(() => {});
    }
    const data = await r.json();
    if (!r.ok) {
      const e = data.error || {};
      show(tr("error") + ": " + (e.title || r.status) + " — " + (e.message || ""), true);
      throw new Error(e.message || String(r.status));
    }
    return data;
  }
  function localTime(iso) {
    return new Date(iso).toLocaleTimeString(lang === "vi" ? "vi-VN" : "en-GB",
      { timeZone: "Asia/Ho_Chi_Minh", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }
  function dispatchText(d) {
    if (!d) return "";
    const c = d.counts, n = d.devices, done = c.delivered;
    return tr(c.pending === 0 && c.retryable === 0 ? "delivered" : "pending", { d: done, n: n });
  }
  // Areas one may target: each granted area and its children; a global grant offers the roots.
  // The field accepts any code (the server decides), the list only helps.
  let choices = null;
  async function areaChoices() {
    if (choices) return choices;
    const seen = new Map();
    for (const g of session.grants) {
      if (!g.area) {
        for (const a of await api("GET", "/api/v1/areas")) seen.set(a.code, a);
        continue;
      }
      seen.set(g.area.code, g.area);
      const detail = await api("GET", "/api/v1/areas/" + encodeURIComponent(g.area.code));
      for (const a of detail.children.slice(0, 500)) seen.set(a.code, a);
    }
    choices = [...seen.values()];
    return choices;
  }
  function areaOptions(select, withAll) {
    if (withAll) select.append(el("option", { value: "" }, tr("all")));
    for (const g of session.grants) {
      if (g.area) select.append(el("option", { value: g.area.code }, g.area.code + " · " + g.area.name));
    }
  }

  // -- devices ------------------------------------------------------------------------------
  async function devices() {
    const filter = el("select", { id: "area-filter", onchange: load });
    areaOptions(filter, true);
    const box = el("div", { id: "devices" });
    main.append(el("h2", {}, tr("nav.devices")), el("label", {}, tr("area") + " ", filter), box,
      legend());
    async function load() {
      const q = filter.value ? "?area=" + encodeURIComponent(filter.value) : "";
      const list = await api("GET", "/api/v1/devices" + q);
      box.replaceChildren();
      if (!list.length) { box.append(el("p", {}, tr("no_devices"))); return; }
      const byArea = new Map();
      for (const d of list) {
        const key = d.area ? d.area.code + " · " + d.area.name : "—";
        if (!byArea.has(key)) byArea.set(key, []);
        byArea.get(key).push(d);
      }
      for (const [area, ds] of byArea) {
        const rows = ds.map((d) => el("tr", { "data-device-id": d.id, class: "status-" + d.status },
          el("td", {}, el("span", { class: "dot" })), el("td", {}, d.name), el("td", {}, d.kind),
          el("td", { class: "status" }, tr("status." + d.status))));
        box.append(el("h3", {}, area), el("table", { class: "devices" },
          el("thead", {}, el("tr", {}, el("th", {}), el("th", {}, tr("name")), el("th", {}, tr("kind")),
            el("th", {}, tr("status")))), el("tbody", {}, ...rows)));
      }
    }
    live.reload = load;
    live.device = (d) => {
      const row = document.querySelector('[data-device-id="' + d.id + '"]');
      if (!row) { load(); return; }
      row.className = "status-" + d.status;
      row.querySelector(".status").textContent = tr("status." + d.status);
    };
    await load();
  }
  function legend() {
    return el("p", { class: "legend" }, ...["online", "offline", "fault", "maintenance", "unknown"].map(
      (s) => el("span", { class: "status-" + s }, el("span", { class: "dot" }), " " + tr("status." + s) + " ")));
  }

  // -- today's schedule ---------------------------------------------------------------------
  async function schedule() {
    const filter = el("select", { id: "area-filter", onchange: load });
    areaOptions(filter, true);
    const box = el("div", { id: "schedule" });
    main.append(el("h2", {}, tr("nav.schedule")), el("label", {}, tr("area") + " ", filter), box);
    async function load() {
      const q = filter.value ? "?area=" + encodeURIComponent(filter.value) : "";
      const data = await api("GET", "/api/v1/schedule/today" + q);
      box.replaceChildren(el("p", {}, data.date));
      if (!data.communes.length) { box.append(el("p", { id: "none-today" }, tr("none_today"))); return; }
      for (const c of data.communes) {
        const rows = c.items.map((i) => el("tr", { class: "prio-" + i.priority, "data-broadcast-id": i.broadcast_id },
          el("td", {}, localTime(i.at)), el("td", {}, i.title), el("td", {}, tr("priority." + i.priority)),
          el("td", {}, tr("bstatus." + i.status)), el("td", { class: "dispatch" }, dispatchText(i.dispatch))));
        box.append(el("h3", {}, c.area ? c.area.code + " · " + c.area.name : "—"),
          el("table", { class: "schedule" }, el("thead", {}, el("tr", {}, el("th", {}, tr("time")),
            el("th", {}, tr("title")), el("th", {}, tr("priority")), el("th", {}, tr("status")),
            el("th", {}, tr("dispatch")))), el("tbody", {}, ...rows)));
      }
    }
    live.dispatch = load;
    live.broadcast = load;
    live.reload = load;
    await load();
  }

  // -- broadcasts ---------------------------------------------------------------------------
  function localInput(date) {
    // "YYYY-MM-DDTHH:MM:SS" in Vietnam's time (UTC+7, no DST)
    return new Date(date.getTime() + 7 * 3600e3).toISOString().slice(0, 19);
  }
  function bodyFrom(form, priority, when) {
    const channels = [...form.querySelectorAll("input[name=channel]:checked")].map((x) => x.value);
    const text = form.querySelector("[name=text]").value;
    const content = {};
    if (channels.includes("audio")) content.audio = { type: "speech", text: text, voice: "vi" };
    if (channels.includes("board")) content.board = { text: text };
    if (channels.includes("sms")) content.sms = { text: text };
    return {
      title: form.querySelector("[name=title]").value,
      category: form.querySelector("[name=category]").value,
      priority: priority || form.querySelector("[name=priority]").value,
      content: content,
      targets: { areas: [form.querySelector("[name=area]").value], channels: channels },
      schedule: { kind: "once", instants: [when || (form.querySelector("[name=when]").value + "+07:00")],
        zone: "Asia/Ho_Chi_Minh", duration_s: Number(form.querySelector("[name=duration]").value || 300) },
    };
  }
  function composeForm(id, emergency) {
    const cats = ["local_government", "policy_law", "disaster", "health", "security", "knowledge",
      "good_examples", "feedback_answer", "other"];
    const list = el("datalist", { id: id + "-areas" });
    const area = el("input", { name: "area", id: id + "-area", list: id + "-areas", required: true,
      maxlength: 32, pattern: "[A-Za-z0-9._\\-]{1,32}", autocomplete: "off" });
    areaChoices().then((cs) => {
      for (const a of cs) list.append(el("option", { value: a.code }, a.code + " · " + a.name));
      if (cs.length && !area.value) area.value = cs[0].code;
    });
    const prio = el("select", { name: "priority", id: id + "-priority" },
      ...["normal", "priority"].concat(perms.has("emergency") ? ["emergency"] : [])
        .map((p) => el("option", { value: p }, tr("priority." + p))));
    const chans = ["audio", "board"].concat(perms.has("sms_sender") ? ["sms"] : []).map((c) =>
      el("label", { class: "check" }, el("input", { type: "checkbox", name: "channel", value: c,
        id: id + "-ch-" + c, checked: c !== "sms" }), " " + tr("channel." + c)));
    return el("form", { id: id, class: "compose", onsubmit: (e) => e.preventDefault() },
      el("label", {}, tr("title"), el("input", { name: "title", id: id + "-title", required: true, maxlength: 300,
        value: emergency ? tr("emergency.title") : null })),
      el("label", {}, tr("category"), el("select", { name: "category", id: id + "-category" },
        ...(emergency ? ["disaster"] : cats).map((c) => el("option", { value: c }, tr("cat." + c))))),
      emergency ? null : el("label", {}, tr("priority"), prio),
      el("label", {}, tr("area"), area, list),
      el("fieldset", {}, el("legend", {}, tr("channels")), ...chans),
      el("label", {}, tr("text"), el("textarea", { name: "text", id: id + "-text", rows: 4, required: true })),
      emergency ? null : el("label", {}, tr("when"), el("input", { type: "datetime-local", step: 1, name: "when",
        id: id + "-when", value: localInput(new Date(Date.now() + 120e3)) })),
      el("label", {}, tr("duration"), el("input", { type: "number", name: "duration", min: 1, max: 86400,
        value: emergency ? 600 : 300, id: id + "-duration" })));
  }
  async function broadcasts() {
    const form = composeForm("compose", false);
    const saved = async (submit) => {
      if (!form.reportValidity()) return;
      const b = await api("POST", "/api/v1/broadcasts", bodyFrom(form));
      if (submit) await api("POST", "/api/v1/broadcasts/" + b.id + "/submit", {});
      show(tr("saved"), false);
      form.querySelector("[name=title]").value = "";
      form.querySelector("[name=text]").value = "";
      await load();
    };
    form.append(el("div", { class: "buttons" },
      el("button", { type: "button", id: "save-draft", onclick: () => saved(false) }, tr("save_draft")),
      el("button", { type: "button", id: "draft-submit", class: "primary", onclick: () => saved(true) },
        tr("draft_submit"))));
    const list = el("div", { id: "broadcasts" });
    main.append(el("h2", {}, tr("compose")), form);
    if (perms.has("emergency")) main.append(emergencyBox());
    main.append(el("h2", {}, tr("nav.broadcasts")), list);

    const dispatches = new Map();
    async function load() {
      const items = await api("GET", "/api/v1/broadcasts?limit=50");
      await Promise.all(items.filter((b) => ["approved", "scheduled", "expired"].includes(b.status))
        .map(async (b) => {
          const ds = await api("GET", "/api/v1/broadcasts/" + b.id + "/dispatches?limit=1");
          if (ds.length) dispatches.set(b.id, ds[0]);
        }));
      const rows = items.map((b) => {
        const act = el("td", { class: "actions" });
        const call = (verb, body) => async () => {
          await api("POST", "/api/v1/broadcasts/" + b.id + "/" + verb, body || {});
          await load();
        };
        const needReason = (verb) => async () => {
          const reason = window.prompt(tr("reason"));
          if (reason) await call(verb, { reason: reason })();
        };
        if (b.status === "drafted") act.append(el("button", { class: "submit", onclick: call("submit") }, tr("submit")));
        if (b.status === "submitted" && !b.editors.includes(session.username)) {
          act.append(el("button", { class: "approve primary", onclick: call("approve") }, tr("approve")),
            el("button", { class: "reject", onclick: needReason("reject") }, tr("reject")));
        }
        if (!["cancelled", "expired"].includes(b.status)) {
          act.append(el("button", { class: "cancel", onclick: needReason("cancel") }, tr("cancel")));
        }
        const when = b.schedule.instants.length ? localTime(b.schedule.instants[0]) : (b.schedule.cron || "");
        return el("tr", { "data-broadcast-id": b.id, class: "prio-" + b.priority + " bstatus-" + b.status },
          el("td", {}, when), el("td", { class: "title" }, b.title),
          el("td", {}, tr("priority." + b.priority)),
          el("td", { class: "bstatus" }, tr("bstatus." + b.status)), el("td", {}, b.author),
          el("td", { class: "dispatch" }, dispatchText(dispatches.get(b.id))), act);
      });
      list.replaceChildren(el("table", { class: "broadcasts" }, el("thead", {}, el("tr", {},
        el("th", {}, tr("time")), el("th", {}, tr("title")), el("th", {}, tr("priority")),
        el("th", {}, tr("status")), el("th", {}, tr("author")), el("th", {}, tr("dispatch")), el("th", {}))),
        el("tbody", {}, ...rows)));
    }
    live.dispatch = (d) => {
      dispatches.set(d.broadcast_id, d);
      const cell = document.querySelector('[data-broadcast-id="' + d.broadcast_id + '"] .dispatch');
      if (cell) cell.textContent = dispatchText(d); else load();
    };
    live.broadcast = load;
    live.reload = load;
    await load();
  }
  function emergencyBox() {
    const dialog = el("dialog", { id: "emergency-dialog" });
    const form = composeForm("emergency-form", true);
    const confirm = el("input", { type: "checkbox", id: "emergency-confirm" });
    const send = el("button", { type: "button", id: "emergency-send", class: "danger", disabled: true,
      onclick: async () => {
        if (!confirm.checked || !form.reportValidity()) return;
        const b = await api("POST", "/api/v1/broadcasts",
          bodyFrom(form, "emergency", new Date().toISOString()));
        await api("POST", "/api/v1/broadcasts/" + b.id + "/submit", {});
        dialog.close();
        show(tr("saved"), false);
      } }, tr("emergency.send"));
    confirm.addEventListener("change", () => { send.disabled = !confirm.checked; });
    dialog.append(el("h2", {}, tr("emergency.title")), form,
      el("label", { class: "confirm" }, confirm, " " + tr("emergency.confirm")),
      el("div", { class: "buttons" }, send,
        el("button", { type: "button", onclick: () => dialog.close() }, tr("close"))));
    return el("div", { class: "emergency" }, el("button", { type: "button", id: "emergency-button",
      class: "danger big", onclick: () => dialog.showModal() }, tr("emergency")), dialog);
  }

  // -- KPIs ---------------------------------------------------------------------------------
  async function kpi() {
    const plans = await api("GET", "/api/v1/kpi/plans");
    main.append(el("h2", {}, tr("nav.kpi")));
    if (!plans.length) { main.append(el("p", { id: "no-plans" }, tr("no_plans"))); return; }
    const sel = el("select", { id: "plan" }, ...plans.map((p) =>
      el("option", { value: p.id }, p.title + (p.area ? " (" + p.area.name + ")" : ""))));
    const asOf = el("input", { type: "date", id: "as-of", value: new Date().toISOString().slice(0, 10) });
    const frame = el("iframe", { id: "kpi-report", title: tr("nav.kpi") });
    const showReport = () => {
      frame.src = "/api/v1/kpi/report?format=html&lang=" + lang + "&plan=" + encodeURIComponent(sel.value) +
        (asOf.value ? "&as_of=" + asOf.value : "");
    };
    main.append(el("label", {}, tr("plan") + " ", sel), el("label", {}, tr("as_of") + " ", asOf),
      el("button", { type: "button", id: "show-report", onclick: showReport }, tr("show")), frame);
    showReport();
  }

  // -- live updates (server-sent events) -----------------------------------------------------
  const live = {};
  function connect() {
    const es = new EventSource("/api/v1/events");
    const dot = document.getElementById("live");
    let down = false;
    // Events carry current state, not deltas: after a reconnect, reload what the page shows.
    es.onopen = () => { dot.classList.add("on"); if (down && live.reload) live.reload(); down = false; };
    es.onerror = () => { dot.classList.remove("on"); down = true; };
    for (const kind of ["device", "dispatch", "broadcast"]) {
      es.addEventListener(kind, (e) => { if (live[kind]) live[kind](JSON.parse(e.data)); });
    }
  }

  const sections = { devices, schedule, broadcasts, kpi };
  sections[boot.section]().then(connect, (e) => console.error(e));
})();
