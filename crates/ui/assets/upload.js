// Ours. A form marked `data-upload="ID"` sends its file's bytes as the
// request body (so the node never parses multipart), draws the upload's
// progress in the form's <progress>, and puts the answer into element ID.
// Fields marked `data-param` travel in the query string; the CSRF token
// in its header. A script file, because the page allows no inline script.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-upload]")) {
      return;
    }
    event.preventDefault();
    var input = form.querySelector("input[type=file]");
    var bar = form.querySelector("progress");
    var out = document.getElementById(form.getAttribute("data-upload"));
    var file = input && input.files[0];
    if (!file || !out) {
      return;
    }
    if (file.size > Number(form.getAttribute("data-max"))) {
      out.innerHTML = "";
      var p = document.createElement("p");
      p.textContent = form.getAttribute("data-too-large");
      var alert = document.createElement("div");
      alert.className = "alert";
      alert.setAttribute("role", "alert");
      alert.appendChild(p);
      out.appendChild(alert);
      return;
    }
    var params = new URLSearchParams();
    form.querySelectorAll("[data-param]").forEach(function (el) {
      if (el.type === "checkbox") {
        params.set(el.name, el.checked ? "true" : "false");
      } else {
        params.set(el.name, el.value);
      }
    });
    params.set("name", file.name);
    var button = form.querySelector("button[type=submit]");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.getAttribute("action") + "?" + params.toString());
    xhr.setRequestHeader("X-HearthNet-CSRF", form.querySelector("input[name=csrf]").value);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable && bar) {
        bar.max = e.total;
        bar.value = e.loaded;
      }
    });
    // Sent: the node now stores (and perhaps indexes) it.
    xhr.upload.addEventListener("load", function () {
      out.textContent = form.getAttribute("data-processing");
    });
    var finish = function () {
      if (button) {
        button.disabled = false;
      }
    };
    xhr.addEventListener("load", function () {
      finish();
      if (xhr.status === 200) {
        // The answer is a fragment of this node's own page.
        out.innerHTML = xhr.responseText;
        // Its forms may be htmx's (the join page's Join button).
        if (window.htmx) {
          window.htmx.process(out);
        }
        document.body.dispatchEvent(new Event("files-changed"));
      } else if (xhr.status === 413) {
        out.textContent = form.getAttribute("data-too-large");
      } else if (xhr.status === 401) {
        out.textContent = form.getAttribute("data-logged-out");
      } else if (xhr.status === 403) {
        out.textContent = form.getAttribute("data-refused");
      } else {
        out.textContent = form.getAttribute("data-failed");
      }
    });
    xhr.addEventListener("error", function () {
      finish();
      out.textContent = form.getAttribute("data-failed");
    });
    if (button) {
      button.disabled = true;
    }
    if (bar) {
      bar.value = 0;
    }
    out.textContent = form.getAttribute("data-uploading");
    xhr.send(file);
  });
})();
