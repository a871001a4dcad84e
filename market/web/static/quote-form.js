// The quote form: show only the options of the chosen model (all are shown without script).
(function () {
  "use strict";
  var select = document.getElementById("model_kind");
  if (!select) { return; }
  var groups = document.querySelectorAll("[data-model-kind]");

  function update() {
    groups.forEach(function (group) {
      group.hidden = group.dataset.modelKind !== select.value;
    });
  }

  select.addEventListener("change", update);
  update();
})();

// Epsilon presets: a click fills the epsilon field (without script they do nothing).
(function () {
  "use strict";
  var field = document.getElementById("epsilon");
  if (!field) { return; }
  document.querySelectorAll("[data-epsilon]").forEach(function (button) {
    button.addEventListener("click", function () {
      field.value = button.dataset.epsilon;
      field.focus();
    });
  });
})();

// Defaults per template: choosing a model fills epochs and batch size with its defaults
// (unless you typed your own) and shows its default learning rate.
(function () {
  "use strict";
  var select = document.getElementById("model_kind");
  if (!select || !select.dataset.defaults) { return; }
  var defaults = JSON.parse(select.dataset.defaults);
  var edited = {};
  ["epochs", "batch_size"].forEach(function (id) {
    var field = document.getElementById(id);
    if (field) { field.addEventListener("input", function () { edited[id] = true; }); }
  });
  select.addEventListener("change", function () {
    var chosen = defaults[select.value];
    if (!chosen) { return; }
    ["epochs", "batch_size"].forEach(function (id) {
      var field = document.getElementById(id);
      if (field && !edited[id]) { field.value = chosen[id]; }
    });
    var lr = document.getElementById("lr-default");
    if (lr) { lr.textContent = chosen.learning_rate; }
  });
})();
