// The Live page: re-reads GET /jobs every 2 s and redraws the table in place (no page reload).
// Everything from the server is set with textContent, never parsed as HTML.
(function () {
  "use strict";
  var table = document.getElementById("live");
  if (!table) { return; }
  var body = table.tBodies[0];
  var stamp = document.getElementById("refreshed");
  var source = table.getAttribute("data-source");
  var runUrl = table.getAttribute("data-run-url");
  var projectUrl = table.getAttribute("data-project-url");
  var jobUrl = table.getAttribute("data-job-url");
  var cancelUrl = table.getAttribute("data-cancel-url");
  var csrfField = table.getAttribute("data-csrf-field");
  var csrfToken = table.getAttribute("data-csrf-token");

  function cell(row, text) {
    var td = document.createElement("td");
    if (text !== undefined && text !== null) { td.textContent = String(text); }
    row.appendChild(td);
    return td;
  }

  function link(td, href, text) {
    var a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    td.appendChild(a);
  }

  function render(jobs) {
    var rows = document.createDocumentFragment();
    jobs.forEach(function (job) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-job", job.id);
      var page = job.has_run_page ? runUrl : jobUrl;  // only training runs have a run page
      link(cell(tr), page.replace("__id__", encodeURIComponent(job.id)), job.id);
      cell(tr, job.kind || "");
      var project = cell(tr);
      if (job.project) { link(project, projectUrl.replace("__id__", encodeURIComponent(job.project)), job.project); }
      cell(tr, job.status);
      cell(tr, (job.phase || job.note || "") + (job.step ? " · step " + job.step : ""));
      var progress = cell(tr);
      if (job.fraction !== null && job.fraction !== undefined) {
        var bar = document.createElement("progress");
        bar.max = 1;
        bar.value = job.fraction;
        progress.appendChild(bar);
      }
      var span = document.createElement("span");
      span.className = "small";
      if (job.calls !== null && job.calls !== undefined) { span.textContent = " " + job.calls + " / " + job.budget + " calls"; }
      else if (job.total) { span.textContent = " " + job.done + " / " + job.total + " tasks"; }
      progress.appendChild(span);
      var names = Object.keys(job.outcomes || {}).sort();
      if (names.length) {
        var detail = document.createElement("div");
        detail.className = "small muted";
        detail.textContent = names.map(function (name) { return name + " " + job.outcomes[name]; }).join(" · ");
        progress.appendChild(detail);
      }
      var actions = cell(tr);
      if (job.cancellable) {  // the same form the page renders: a POST with the page's CSRF token
        var form = document.createElement("form");
        form.method = "post";
        form.action = cancelUrl.replace("__id__", encodeURIComponent(job.id));
        form.className = "inline";
        var token = document.createElement("input");
        token.type = "hidden";
        token.name = csrfField;
        token.value = csrfToken;
        var button = document.createElement("button");
        button.type = "submit";
        button.className = "secondary";
        button.textContent = "Cancel";
        form.appendChild(token);
        form.appendChild(button);
        actions.appendChild(form);
      } else if (job.cancelled_by) {
        var note = document.createElement("span");
        note.className = "small muted";
        note.textContent = "cancelling (" + job.cancelled_by + ")";
        actions.appendChild(note);
      }
      rows.appendChild(tr);
    });
    if (!jobs.length) {
      var empty = document.createElement("tr");
      empty.className = "empty";
      var td = cell(empty, "Nothing running or queued.");
      td.colSpan = 7;
      td.className = "muted";
      rows.appendChild(empty);
    }
    body.replaceChildren(rows);
    var count = Number(stamp.getAttribute("data-refreshes") || "0") + 1;
    stamp.setAttribute("data-refreshes", String(count));
    stamp.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
  }

  function refresh() {
    fetch(source, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (answer) {
        if (!answer.ok) { throw new Error("HTTP " + answer.status); }
        return answer.json();
      })
      .then(function (data) { render(data.jobs || []); })
      .catch(function (error) { stamp.textContent = "Refresh failed (" + error.message + "); retrying."; });
  }

  window.setInterval(refresh, 2000);
})();
