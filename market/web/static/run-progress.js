// Live progress of a run page: poll its progress JSON every second and move the bar.
// A static file because the Content-Security-Policy allows script from 'self' only.
(function () {
  "use strict";
  var section = document.getElementById("progress");
  if (!section || section.dataset.finished === "true") { return; }
  var url = section.dataset.progressUrl;
  var bar = document.getElementById("run-progress");
  var percent = document.getElementById("progress-percent");
  var step = document.getElementById("progress-step");
  var steps = document.getElementById("progress-steps");
  var epsilon = document.getElementById("progress-epsilon");
  var status = document.getElementById("run-status");
  var failures = 0;

  function show(data) {
    bar.max = Math.max(data.steps, 1);
    bar.value = data.status === "succeeded" ? bar.max : data.step;
    bar.textContent = data.percent + "%";
    percent.textContent = data.percent + "%";
    step.textContent = data.step;
    steps.textContent = data.steps;
    epsilon.textContent = Number(data.epsilon_spent).toFixed(3);
    status.textContent = data.status;
    status.className = "status status-" + data.status;
  }

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        failures = 0;
        show(data);
        if (data.finished) {
          // The receipts are rendered by the server: load them once.
          window.setTimeout(function () { window.location.reload(); }, 400);
        } else {
          window.setTimeout(poll, 1000);
        }
      })
      .catch(function () {
        failures += 1;
        if (failures < 30) { window.setTimeout(poll, 2000); }
      });
  }

  window.setTimeout(poll, 1000);
})();
