// The listing wizard: a change that reshapes the column rows (a column's type, trimming
// spaces, the marks that mean missing, the label, which takes no fill) asks the server to
// redraw the form at once, as the "Apply to the columns below" button does; without
// JavaScript that button still works.
(function () {
  "use strict";
  var form = document.querySelector("form[data-testid=wizard-form]");
  if (!form) return;
  var apply = form.querySelector("button[name=use][value=refresh]");
  if (!apply) return;
  form.addEventListener("change", function (event) {
    var target = event.target;
    var reshapes = target.id === "trim_spaces" || target.id === "label" ||
      target.name === "missing_marks" || /^c\d+-type$/.test(target.name || "");
    if (!reshapes) return;
    var column = target.closest("fieldset.column");
    form.action = form.action.split("#")[0] + "#" + (column ? column.id : "choose-heading");
    form.requestSubmit(apply);
  });
  // Enter in "Other marks" applies them (elsewhere it lists, the form's default button).
  var marks = form.querySelector("#other_marks");
  if (marks) {
    marks.addEventListener("keydown", function (event) {
      if (event.key !== "Enter") return;
      event.preventDefault();
      form.action = form.action.split("#")[0] + "#choose-heading";
      form.requestSubmit(apply);
    });
  }
})();
