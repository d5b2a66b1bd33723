/* The slapos proxy's web panel: a few pages over the proxy's JSON-RPC methods
 * (docs/panel.rst). No framework: each page is a function that fetches, then renders
 * HTML with every value escaped. */
"use strict";

const TOKEN = document.querySelector('meta[name="slapos-panel-token"]').content;
const main = document.getElementById("main");
const banner = document.getElementById("banner");

/* ---- helpers ------------------------------------------------------------------------- */

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const esc = (value) => String(value ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);
const isUrl = (value) => typeof value === "string" && /^(https?|ftp):\/\/[^\s"<>]+$/.test(value);
const treeLink = (title) => `#/tree/${encodeURIComponent(title)}`;

class PanelError extends Error {}

async function rpc(method, body) {
  let answer;
  try {
    answer = await fetch(`../${method}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-SlapOS-Panel-Token": TOKEN },
      body: JSON.stringify(body || {}),
      credentials: "same-origin",
    });
  } catch (error) {
    showBanner("The proxy does not answer: is it running? Retrying…");
    throw new PanelError("the proxy does not answer", { cause: "offline" });
  }
  if (answer.status === 503) {  // its database is unavailable for a moment
    showBanner("The proxy cannot reach its database. Retrying…");
    throw new PanelError("the proxy's database is unavailable", { cause: "offline" });
  }
  hideBanner();
  const data = await answer.json().catch(() => null);
  if (!answer.ok) throw new PanelError((data && data.title) || `HTTP ${answer.status}`);
  return data;
}

function showBanner(text) {
  banner.textContent = text;
  banner.hidden = false;
}

function hideBanner() {
  banner.hidden = true;
}

function shortUrl(url) {
  if (!url) return "";
  const parts = String(url).replace(/\/+$/, "").split("/");
  return parts.length > 2 ? `…/${parts.slice(-2).join("/")}` : url;
}

const STATE_TEXT = { started: 1, stopped: 1, destroyed: 1, available: 1, free: 1, busy: 1, error: 1, building: 1 };

function badge(state, extra) {
  const name = STATE_TEXT[state] ? state : "unknown";
  return `<span class="badge badge-${name}"${extra ? ` title="${esc(extra)}"` : ""}>${esc(state || "unknown")}</span>`;
}

function when(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : `<time class="muted" datetime="${esc(iso)}" title="${esc(iso)}">${esc(date.toLocaleString())}</time>`;
}

/* What the node last reported: state, message, when; an older error is still named. */
function statusCell(status) {
  if (!status) return '<span class="badge badge-none" title="the node has reported nothing yet">no report</span>';
  const where = status.instance ? `<span class="muted">${esc(status.instance)}:</span> ` : "";
  let html = `${badge(status.state)} ${where}`;
  if (status.state === "error") html += `<span class="status-message">${esc(status.message)}</span> `;
  html += when(status.time);
  if (status.state !== "error" && status.error) {
    html += `<div class="last-error">last error ${when(status.error_time)}: ${esc(status.error)}</div>`;
  }
  return `<span class="status">${html}</span>`;
}

function value(v) {
  const text = typeof v === "string" ? v : JSON.stringify(v, null, 2);
  if (isUrl(text)) return `<a href="${esc(text)}" target="_blank" rel="noopener noreferrer">${esc(text)}</a>`;
  if (text.length > 100 || text.includes("\n")) {
    return `<details class="fold"><summary>${esc(text.slice(0, 60).split("\n")[0])}… <span class="muted">(${text.length} characters)</span></summary><pre>${esc(text)}</pre></details>`;
  }
  return `<span class="value">${esc(text)}</span>`;
}

/* `_` holds JSON for json-in-xml releases: shown decoded. */
function decoded(parameters) {
  const keys = Object.keys(parameters || {});
  if (keys.length === 1 && keys[0] === "_") {
    try {
      const data = JSON.parse(parameters._);
      if (data && typeof data === "object" && !Array.isArray(data)) return data;
    } catch (error) { /* not JSON: shown as it is */ }
  }
  return parameters || {};
}

function parameterTable(parameters, empty) {
  const entries = Object.entries(decoded(parameters));
  if (!entries.length) return `<p class="muted">${esc(empty)}</p>`;
  return `<table class="kv"><tbody>${entries.map(([k, v]) => `<tr><th scope="row">${esc(k)}</th><td>${value(v)}</td></tr>`).join("")}</tbody></table>`;
}

function confirmDialog(title, text, action) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = action;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

function errorBox(error) {
  return `<div class="notice notice-error" role="alert">${esc(error.message || error)}</div>`;
}

/* ---- instance trees ---------------------------------------------------------------- */

const treeView = { sort: "title", descending: false, filter: "" };
const TREE_COLUMNS = [
  ["title", "Title"], ["software_release_uri", "Software release"], ["software_type", "Type"],
  ["state", "Requested state"], ["status", "Node status"], ["shared", "Shared"], ["instance_count", "Instances"],
];

async function pageTrees() {
  const data = await rpc("slapos.allDocs.WIP.instance_tree_list");
  const trees = data.result_list;
  main.innerHTML = `
    <div class="page-head">
      <h1>Instance trees <span class="count" id="tree-count"></span></h1>
      <div class="tools">
        <input type="search" id="tree-filter" placeholder="Filter by title, release, type, state…" aria-label="Filter instance trees" value="${esc(treeView.filter)}">
        <a class="button primary" href="#/request">Request an instance</a>
      </div>
    </div>
    <div class="table-wrap"><table class="list" id="trees">
      <thead><tr>${TREE_COLUMNS.map(([key, label]) => `<th scope="col"><button type="button" data-sort="${key}">${label}</button></th>`).join("")}</tr></thead>
      <tbody></tbody>
    </table></div>
    ${trees.length ? "" : '<p class="empty">No instance tree yet. <a href="#/request">Request one</a>, or run <code>slapos request</code>.</p>'}`;
  const render = () => {
    const needle = treeView.filter.trim().toLowerCase();
    const shown = trees.filter((t) => !needle || [t.title, t.software_release_uri, t.software_type, t.state, t.shared ? "shared" : ""].join(" ").toLowerCase().includes(needle));
    const key = treeView.sort;
    const sortValue = (t) => (key === "status" ? (t.status ? t.status.state : "") : t[key]);
    shown.sort((a, b) => {
      const x = sortValue(a), y = sortValue(b);
      const order = typeof x === "number" && typeof y === "number" ? x - y : String(x ?? "").localeCompare(String(y ?? ""), undefined, { numeric: true });
      return treeView.descending ? -order : order;
    });
    main.querySelector("#trees tbody").innerHTML = shown.map((t) => `<tr>
      <td data-label="Title"><a href="${treeLink(t.title)}">${esc(t.title)}</a></td>
      <td data-label="Software release" title="${esc(t.software_release_uri)}">${esc(shortUrl(t.software_release_uri))}</td>
      <td data-label="Type">${esc(t.software_type)}</td>
      <td data-label="Requested state">${badge(t.state)}</td>
      <td data-label="Node status">${statusCell(t.status)}</td>
      <td data-label="Shared">${t.shared ? '<span class="badge badge-shared">shared</span>' : "—"}</td>
      <td data-label="Instances" class="number">${t.instance_count}</td></tr>`).join("");
    main.querySelector("#tree-count").textContent = shown.length === trees.length ? `${trees.length}` : `${shown.length} of ${trees.length}`;
    for (const button of main.querySelectorAll("th button")) {
      const active = button.dataset.sort === key;
      button.parentElement.setAttribute("aria-sort", active ? (treeView.descending ? "descending" : "ascending") : "none");
    }
  };
  main.querySelector("thead").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-sort]");
    if (!button) return;
    treeView.descending = treeView.sort === button.dataset.sort ? !treeView.descending : false;
    treeView.sort = button.dataset.sort;
    render();
  });
  main.querySelector("#tree-filter").addEventListener("input", (event) => {
    treeView.filter = event.target.value;
    render();
  });
  render();
  performance.mark("panel:trees-rendered");
}

/* ---- one instance tree ------------------------------------------------------------- */

function instanceCard(instance, rootTitle) {
  const role = instance.shared ? "shared instance" : instance.title === rootTitle ? "root instance" : "child instance";
  const addresses = (instance.ip_list || []).map(([iface, ip]) => `<li><code>${esc(ip)}</code> <span class="muted">${esc(iface)}</span></li>`).join("");
  const hosted = (instance.hosted_shared_list || []).map((s) => `
      <li><a href="${treeLink(s.root_instance_title)}">${esc(s.title)}</a> <span class="muted">(${esc(s.software_type)}, ${s.root_instance_title === s.title ? "its own tree" : `tree ${esc(s.root_instance_title)}`})</span>
      ${parameterTable(s.connection_parameters, "no connection parameters yet")}</li>`).join("");
  return `<section class="card instance" data-title="${esc(instance.title)}">
    <header><h2>${esc(instance.title)}</h2><span class="role">${role}</span>${instance.shared ? '<span class="badge badge-shared">shared</span>' : badge(instance.state)}</header>
    <dl class="facts">
      <dt>Node status</dt><dd>${statusCell(instance.status)}</dd>
      <dt>Partition</dt><dd><a href="#/nodes">${esc(instance.computer_guid)}</a> / <code>${esc(instance.compute_partition_id)}</code></dd>
      <dt>Software type</dt><dd>${esc(instance.software_type)}</dd>
      <dt>Software release</dt><dd class="url">${value(instance.software_release_uri)}</dd>
      ${addresses ? `<dt>Addresses</dt><dd><ul class="plain">${addresses}</ul></dd>` : ""}
    </dl>
    <h3>Connection parameters</h3>
    <div class="connection">${parameterTable(instance.connection_parameters, "none published yet: the node publishes them once the instance runs")}</div>
    <details class="parameters"><summary>Instance parameters</summary>${parameterTable(instance.parameters, "no parameters")}</details>
    ${hosted ? `<h3>Shared instances hosted here</h3><ul class="plain hosted">${hosted}</ul>` : ""}
  </section>`;
}

async function pageTree(title) {
  const data = await rpc("slapos.allDocs.WIP.instance_tree_instance_list", { title });
  const instances = data.result_list;
  const root = instances.find((i) => i.title === title && i.root_instance_title === title) || instances[0];
  const waiting = instances.some((i) => i.state === "started" && !Object.keys(i.connection_parameters || {}).length);
  const actions = [];
  if (!root.shared) {
    actions.push(`<button type="button" class="button" data-state="started" ${root.state === "started" ? "disabled" : ""}>Start</button>`);
    actions.push(`<button type="button" class="button" data-state="stopped" ${root.state === "stopped" ? "disabled" : ""}>Stop</button>`);
  }
  actions.push(`<a class="button" href="#/request?title=${encodeURIComponent(title)}">Update parameters</a>`);
  actions.push(`<button type="button" class="button danger" data-state="destroyed" ${root.state === "destroyed" ? "disabled" : ""}>Destroy</button>`);
  main.innerHTML = `
    <nav class="crumbs"><a href="#/">Instance trees</a> ›</nav>
    <div class="page-head">
      <h1>${esc(title)} ${root.shared ? '<span class="badge badge-shared">shared</span>' : badge(root.state)}</h1>
      <div class="tools actions">${actions.join("")}</div>
    </div>
    <div id="tree-message"></div>
    <p class="muted">${instances.length} instance${instances.length === 1 ? "" : "s"} · release <span title="${esc(root.software_release_uri)}">${esc(shortUrl(root.software_release_uri))}</span> · type ${esc(root.software_type)}</p>
    ${waiting ? '<p class="notice notice-wait" role="status">Waiting for the node to publish connection parameters: this page refreshes itself.</p>' : ""}
    <div class="cards">${instances.map((i) => instanceCard(i, title)).join("")}</div>`;
  main.querySelector(".actions").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-state]");
    if (!button) return;
    const state = button.dataset.state;
    const others = instances.length - 1;
    const what = others ? ` and the ${others === 1 ? "other instance" : `${others} other instances`} of its tree` : "";
    if (state === "destroyed" && !(await confirmDialog(`Destroy ${title}?`, `The node will destroy ${title}${what}, with ${others ? "their" : "its"} data. This cannot be undone.`, "Destroy"))) return;
    try {
      await rpc("slapos.post.v0.software_instance", {
        title, software_release_uri: root.software_release_uri, software_type: root.software_type,
        parameters: root.parameters || {}, state, shared: !!root.shared,
      });
      if (state === "destroyed" && root.shared) {
        location.hash = "#/";  // a shared instance is gone at once: back to the list
        return;
      }
      await route();
      document.getElementById("tree-message").innerHTML = `<div class="notice notice-ok" role="status">${esc(title)} is now requested ${esc(state)}.</div>`;
    } catch (error) {
      document.getElementById("tree-message").innerHTML = errorBox(error);
    }
  });
  if (waiting) refreshLater(10000);
}

/* ---- request ----------------------------------------------------------------------- */

function keyValueEditor(parameters, why) {
  const box = document.createElement("div");
  box.className = "kv-editor";
  box.innerHTML = `<p class="help">No parameter schema for this release${why ? ` (${esc(why)})` : ""}: parameters are sent as text, as <code>slapos request --parameters key=value</code> does.</p>
    <table class="kv"><thead><tr><th scope="col">Name</th><th scope="col">Value</th><th></th></tr></thead><tbody></tbody></table>
    <button type="button" class="button" data-add>Add a parameter</button>`;
  const body = box.querySelector("tbody");
  const addRow = (key, val) => {
    const row = document.createElement("tr");
    row.innerHTML = `<td><input aria-label="Parameter name" class="kv-key"></td><td><input aria-label="Parameter value" class="kv-value"></td><td><button type="button" class="button small" data-remove aria-label="Remove this parameter">✕</button></td>`;
    row.querySelector(".kv-key").value = key || "";
    row.querySelector(".kv-value").value = val ?? "";
    body.append(row);
  };
  box.addEventListener("click", (event) => {
    if (event.target.closest("[data-add]")) addRow();
    if (event.target.closest("[data-remove]")) event.target.closest("tr").remove();
  });
  const entries = Object.entries(parameters || {});
  entries.forEach(([k, v]) => addRow(k, typeof v === "string" ? v : JSON.stringify(v)));
  if (!entries.length) addRow();
  return {
    element: box,
    read() {
      const result = {};
      const errors = [];
      for (const row of body.querySelectorAll("tr")) {
        const key = row.querySelector(".kv-key");
        const text = row.querySelector(".kv-value").value;
        if (!key.value.trim() && !text) continue;
        if (!key.value.trim()) errors.push({ message: "a parameter needs a name", input: key });
        else if (key.value.trim() in result) errors.push({ message: `${key.value.trim()} is given twice`, input: key });
        else result[key.value.trim()] = text;
      }
      return { value: result, errors, serialisation: "xml" };
    },
  };
}

async function pageRequest(query) {
  const updating = query.get("title");
  const [releases, current] = await Promise.all([
    rpc("slapos.allDocs.WIP.software_release_list"),
    updating ? rpc("slapos.allDocs.WIP.instance_tree_instance_list", { title: updating }) : null,
  ]);
  const existing = current ? current.result_list.find((i) => i.title === updating) || current.result_list[0] : null;
  main.innerHTML = `
    <nav class="crumbs"><a href="#/">Instance trees</a> ›${updating ? ` <a href="${treeLink(updating)}">${esc(updating)}</a> ›` : ""}</nav>
    <h1>${updating ? `Update ${esc(updating)}` : "Request an instance"}</h1>
    <form id="request" class="card form" novalidate>
      <div class="field"><label for="rq-url">Software release <span class="required" title="required">*</span></label>
        <input id="rq-url" name="software_release_uri" list="rq-releases" placeholder="pick a supplied release or type its URL" required>
        <datalist id="rq-releases">${releases.result_list.map((r) => `<option value="${esc(r.software_release_uri)}">`).join("")}</datalist>
        <p class="field-error" id="rq-url-error" hidden></p></div>
      <div class="field"><label for="rq-title">Title <span class="required" title="required">*</span></label>
        <input id="rq-title" name="title" ${updating ? "readonly" : ""} placeholder="a name for the instance tree">
        <p class="field-error" id="rq-title-error" hidden></p></div>
      <div class="field"><label for="rq-type">Software type</label><select id="rq-type" name="software_type"></select>
        <p class="help" id="rq-type-help"></p></div>
      <div class="row">
        <div class="field"><label for="rq-state">Requested state</label><select id="rq-state" name="state"><option>started</option><option>stopped</option></select></div>
        <div class="field"><label class="check"><input type="checkbox" id="rq-shared" name="shared"> Shared instance (hosted by an instance of this release)</label></div>
      </div>
      <h2>Parameters</h2>
      <div id="rq-schema-note" class="muted"></div>
      <div id="rq-parameters"></div>
      <div id="rq-message"></div>
      <div class="actions"><button class="button primary" type="submit">${updating ? "Update" : "Request"}</button></div>
    </form>`;
  const form = main.querySelector("#request");
  const urlInput = form.querySelector("#rq-url");
  const typeSelect = form.querySelector("#rq-type");
  let schemaInfo = null;
  let schemaProblem = "";
  let editor = null;
  if (existing) {
    urlInput.value = existing.software_release_uri;
    form.querySelector("#rq-title").value = updating;
    form.querySelector("#rq-state").value = existing.state === "stopped" ? "stopped" : "started";
    form.querySelector("#rq-shared").checked = !!existing.shared;
  } else if (releases.result_list.length === 1) {
    urlInput.value = releases.result_list[0].software_release_uri;
  }

  const currentType = () => (schemaInfo ? schemaInfo.software_type_list.find((t) => t.key === typeSelect.value) : null);
  const buildEditor = () => {
    const holder = form.querySelector("#rq-parameters");
    const type = currentType();
    const previous = existing && (!type || type.software_type === existing.software_type) ? decoded(existing.parameters) : undefined;
    form.querySelector("#rq-type-help").textContent = type ? type.description : "";
    if (type) form.querySelector("#rq-shared").checked = type.shared;
    if (type && type.request_schema) {
      const built = SchemaForm.build(type.request_schema, previous);
      const serialisation = type.serialisation || schemaInfo.serialisation || "json-in-xml";
      editor = { element: built.element, read: () => ({ ...built.read(), serialisation }) };
      form.querySelector("#rq-schema-note").textContent = `Form from the release's schema; parameters are sent as ${serialisation}.`;
    } else {
      editor = keyValueEditor(existing ? existing.parameters : {}, schemaInfo ? "" : schemaProblem);
      form.querySelector("#rq-schema-note").textContent = "";
    }
    holder.replaceChildren(editor.element);
  };
  const loadSchema = async () => {
    const url = urlInput.value.trim();
    schemaInfo = null;
    schemaProblem = "";
    typeSelect.replaceChildren();
    if (url) {
      try {
        schemaInfo = await rpc("slapos.get.WIP.software_release_schema", { software_release_uri: url });
        schemaProblem = schemaInfo.problem_list[0] || "";
      } catch (error) {
        schemaProblem = error.message;
      }
    }
    if (schemaInfo && schemaInfo.software_type_list.length) {
      for (const type of schemaInfo.software_type_list) {
        const option = new Option(`${type.title}${type.shared ? " (shared)" : ""}`, type.key);
        typeSelect.append(option);
      }
      const wanted = existing && schemaInfo.software_type_list.find((t) => t.software_type === existing.software_type && t.shared === !!existing.shared);
      if (wanted) typeSelect.value = wanted.key;
    } else {
      schemaInfo = null;
      const name = existing ? existing.software_type : "default";
      typeSelect.append(new Option(name, name));
    }
    buildEditor();
  };
  urlInput.addEventListener("change", loadSchema);
  typeSelect.addEventListener("change", buildEditor);
  await loadSchema();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = form.querySelector("#rq-message");
    message.innerHTML = "";
    const problems = [];
    const fixed = [["#rq-url", "a software release is required"], ["#rq-title", "a title is required"]];
    for (const [selector, text] of fixed) {
      const input = form.querySelector(selector);
      const box = form.querySelector(`${selector}-error`);
      const missing = !input.value.trim();
      box.textContent = missing ? text : "";
      box.hidden = !missing;
      input.classList.toggle("invalid", missing);
      input.setAttribute("aria-invalid", missing ? "true" : "false");
      if (missing) problems.push({ input });
    }
    const read = editor.read();
    for (const problem of read.errors) {
      if (!problem.input) problems.push(problem);
      else if (problem.input.classList.contains("kv-key")) {
        problem.input.classList.add("invalid");
        problem.input.title = problem.message;
        problems.push(problem);
      } else problems.push(problem);
    }
    const general = read.errors.filter((p) => !p.input || p.input.classList.contains("kv-key"));
    if (problems.length) {
      message.innerHTML = `<div class="notice notice-error" role="alert">Please correct the ${problems.length === 1 ? "field" : "fields"} marked in red.${general.map((p) => `<br>${esc(p.path ? `${p.path}: ` : "")}${esc(p.message)}`).join("")}</div>`;
      const first = problems.find((p) => p.input);
      if (first) first.input.focus();
      return;
    }
    const parameters = read.serialisation === "json-in-xml" ? { _: JSON.stringify(read.value, null, 2) } : read.value;
    const type = currentType();
    const title = form.querySelector("#rq-title").value.trim();
    const shared = form.querySelector("#rq-shared").checked;
    try {
      await rpc("slapos.post.v0.software_instance", {
        title, software_release_uri: urlInput.value.trim(),
        software_type: type ? type.software_type : typeSelect.value,
        parameters, state: form.querySelector("#rq-state").value, shared,
      });
      location.hash = treeLink(title);
    } catch (error) {
      message.innerHTML = errorBox(error);
    }
  });
}

/* ---- nodes ------------------------------------------------------------------------- */

async function pageNodes() {
  const computers = (await rpc("slapos.allDocs.WIP.compute_node_list")).result_list;
  const nodes = await Promise.all(computers.map((c) => rpc("slapos.get.WIP.compute_node", { computer_guid: c.computer_guid })));
  main.innerHTML = `<div class="page-head"><h1>Nodes <span class="count">${nodes.length}</span></h1></div>
    ${nodes.length ? "" : '<p class="empty">No node has registered yet: run <code>slapos node format</code> on a node pointed at this proxy.</p>'}
    ${nodes.map((node) => {
      const busy = node.partition_list.filter((p) => p.slap_state === "busy").length;
      return `<section class="card node">
      <header><h2>${esc(node.computer_guid)}</h2><span class="muted">${esc(node.address || "")}</span>
        <span class="role">${busy} of ${node.partition_list.length} partitions in use</span></header>
      <h3>Software installations</h3>
      ${node.software_installation_list.length ? `<div class="table-wrap"><table class="list"><thead><tr><th scope="col">Software release</th><th scope="col">Requested</th><th scope="col">Node status</th></tr></thead><tbody>
        ${node.software_installation_list.map((s) => `<tr><td data-label="Software release" class="url">${value(s.software_release_uri)}</td><td data-label="Requested">${badge(s.state)}</td><td data-label="Node status">${statusCell(s.status)}</td></tr>`).join("")}
      </tbody></table></div>` : '<p class="muted">Nothing supplied: <code>slapos supply URL ' + esc(node.computer_guid) + "</code></p>"}
      <h3>Partitions</h3>
      <div class="table-wrap"><table class="list partitions"><thead><tr><th scope="col">Partition</th><th scope="col">State</th><th scope="col">Instance</th><th scope="col">Requested</th><th scope="col">Node status</th><th scope="col">Addresses</th></tr></thead><tbody>
        ${node.partition_list.map((p) => `<tr><td data-label="Partition"><code>${esc(p.compute_partition_id)}</code></td>
          <td data-label="State">${badge(p.slap_state)}</td>
          <td data-label="Instance">${p.title ? `<a href="${treeLink(p.root_instance_title)}">${esc(p.title)}</a>${p.shared_count ? ` <span class="muted">+${p.shared_count} shared</span>` : ""}` : "—"}</td>
          <td data-label="Requested">${p.state ? badge(p.state) : "—"}</td>
          <td data-label="Node status">${p.title ? statusCell(p.status) : "—"}</td>
          <td data-label="Addresses">${p.ip_list.map(([, ip]) => `<code>${esc(ip)}</code>`).join(" ") || "—"}</td></tr>`).join("")}
      </tbody></table></div></section>`;
    }).join("")}`;
}

/* ---- search ------------------------------------------------------------------------ */

async function pageSearch(query) {
  const needle = query.get("q") || "";
  main.innerHTML = `<div class="page-head"><h1>Search connection parameters</h1></div>
    <form id="search" class="tools" role="search">
      <input type="search" id="search-value" name="q" placeholder="a value, e.g. a URL or an IP address" aria-label="Connection parameter value" value="${esc(needle)}">
      <button class="button primary" type="submit">Search</button>
    </form>
    <div id="search-results"></div>`;
  main.querySelector("#search").addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/search?q=${encodeURIComponent(main.querySelector("#search-value").value)}`;
  });
  if (!needle.trim()) return;
  const found = await rpc("slapos.allDocs.WIP.connection_parameter_search", { value: needle });
  const rows = found.result_list;
  main.querySelector("#search-results").innerHTML = rows.length ? `
    <p class="muted">${rows.length}${found.truncated ? "+" : ""} match${rows.length === 1 ? "" : "es"}</p>
    <div class="table-wrap"><table class="list"><thead><tr><th scope="col">Instance</th><th scope="col">Tree</th><th scope="col">Parameter</th><th scope="col">Value</th></tr></thead><tbody>
    ${rows.map((r) => `<tr><td data-label="Instance">${esc(r.title)}${r.shared ? ' <span class="badge badge-shared">shared</span>' : ""}</td>
      <td data-label="Tree"><a href="${treeLink(r.root_instance_title)}">${esc(r.root_instance_title)}</a></td>
      <td data-label="Parameter"><code>${esc(r.key)}</code></td><td data-label="Value">${value(r.value)}</td></tr>`).join("")}
    </tbody></table></div>` : `<p class="empty">No connection parameter contains “${esc(needle)}”.</p>`;
}

/* ---- router ------------------------------------------------------------------------ */

const PAGES = [
  [/^\/?$/, "trees", () => pageTrees()],
  [/^\/tree\/(.+)$/, "trees", (m) => pageTree(decodeURIComponent(m[1]))],
  [/^\/request$/, "request", (m, q) => pageRequest(q)],
  [/^\/nodes$/, "nodes", () => pageNodes()],
  [/^\/search$/, "search", (m, q) => pageSearch(q)],
];
let retry = null;

/* Show the page again in `ms`, unless the user is busy with a dialog or a hidden tab. */
function refreshLater(ms) {
  clearTimeout(retry);
  retry = setTimeout(() => {
    if (document.visibilityState === "visible" && !document.querySelector("dialog[open]")) route();
    else refreshLater(ms);
  }, ms);
}

async function route() {
  clearTimeout(retry);
  const [path, search] = location.hash.replace(/^#/, "").split("?");
  const query = new URLSearchParams(search || "");
  for (const [pattern, name, page] of PAGES) {
    const match = path.match(pattern);
    if (!match) continue;
    for (const link of document.querySelectorAll("nav a[data-page]")) {
      link.toggleAttribute("aria-current", link.dataset.page === name);
    }
    try {
      await page(match, query);
    } catch (error) {
      if (error.cause === "offline") {
        retry = setTimeout(route, 2000);  // the proxy restarts: try again
        return;
      }
      main.innerHTML = errorBox(error);
    }
    return;
  }
  main.innerHTML = errorBox(`No page at ${location.hash}`);
}

window.addEventListener("hashchange", route);
// the link of the page shown shows it again, fresh (no hashchange then)
document.querySelector(".top").addEventListener("click", (event) => {
  const link = event.target.closest("a[href^='#']");
  if (link && link.getAttribute("href") === (location.hash || "#/")) route();
});
route();
