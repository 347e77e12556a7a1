/* Copy buttons on a job's page and its reveal page: a button with data-copy="<id>"
   copies the text of the element with that id, exactly as shown (masked values stay
   masked: the page never holds anything else), then says "Copied" for a moment. */
(function () {
  "use strict";
  function say(button, text) {
    button.textContent = text;
    setTimeout(function () { button.textContent = "Copy"; }, 1500);
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-copy]");
    if (!button) { return; }
    var source = document.getElementById(button.dataset.copy);
    if (!source) { return; }
    if (!navigator.clipboard) { say(button, "Copy needs HTTPS"); return; }
    navigator.clipboard.writeText(source.textContent).then(
      function () { say(button, "Copied"); },
      function () { say(button, "Copy failed"); }
    );
  });
})();
