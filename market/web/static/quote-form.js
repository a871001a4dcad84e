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
