// Ours: what the pages do that htmx does not. A script file, because the
// page allows no inline script.
//
// - Uploads. A file is sent as the request body (so the node never parses
//   multipart) with the CSRF token in its header, its progress drawn in
//   the form's <progress> (`upload`, the one place a file is sent). A
//   form marked `data-upload="ID"` (Files, Ask) sends its one file and
//   puts the answer into element ID; fields marked `data-param` travel in
//   the query string. A form marked `data-attach="URL"` (a message) first
//   sends each chosen file to URL, adds each answer (the file's entry,
//   with its hidden field) to its list, then lets htmx send the form.
// - Read receipts. While the page is visible, the conversation's
//   "Mark as read" form (`#mark-read`, present while something shown is
//   unread) is posted: on load, when the page becomes visible, and after
//   the open conversation is swapped in live. A hidden tab marks nothing.
(function () {
  "use strict";

  // The session's CSRF token: the form's field, else the page's htmx headers.
  function csrf(form) {
    var field = form.querySelector("input[name=csrf]");
    if (field) {
      return field.value;
    }
    var headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
    return headers["X-HearthNet-CSRF"] || "";
  }

  function alertIn(out, text) {
    out.innerHTML = "";
    var p = document.createElement("p");
    p.textContent = text;
    var alert = document.createElement("div");
    alert.className = "alert";
    alert.setAttribute("role", "alert");
    alert.appendChild(p);
    out.appendChild(alert);
  }

  // What the person reads when an upload was not taken (no answer of ours).
  function refusal(form, status) {
    if (status === 413) {
      return form.getAttribute("data-too-large");
    } else if (status === 401) {
      return form.getAttribute("data-logged-out");
    } else if (status === 403) {
      return form.getAttribute("data-refused");
    }
    return form.getAttribute("data-failed");
  }

  // Send `file` to `url` as the body; `progress(loaded)` as it goes,
  // `sent()` once the bytes are out, `end(xhr)` with the answer (null when
  // the connection failed).
  function upload(form, url, file, progress, sent, end) {
    var xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-HearthNet-CSRF", csrf(form));
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        progress(e.loaded);
      }
    });
    xhr.upload.addEventListener("load", sent);
    xhr.addEventListener("load", function () {
      end(xhr);
    });
    xhr.addEventListener("error", function () {
      end(null);
    });
    xhr.send(file);
  }

  // Files and Ask: one file, the answer shown in element `data-upload`.
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
      alertIn(out, form.getAttribute("data-too-large"));
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
    if (button) {
      button.disabled = true;
    }
    if (bar) {
      bar.max = file.size || 1;
      bar.value = 0;
    }
    out.textContent = form.getAttribute("data-uploading");
    upload(form, form.getAttribute("action") + "?" + params.toString(), file,
      function (loaded) {
        if (bar) {
          bar.max = file.size || 1;
          bar.value = loaded;
        }
      },
      // Sent: the node now stores (and perhaps indexes) it.
      function () {
        out.textContent = form.getAttribute("data-processing");
      },
      function (xhr) {
        if (button) {
          button.disabled = false;
        }
        if (xhr && xhr.status === 200) {
          // The answer is a fragment of this node's own page; its forms
          // may be htmx's (the join page's Join button).
          out.innerHTML = xhr.responseText;
          if (window.htmx) {
            window.htmx.process(out);
          }
          // A code read from a picture goes into the field it names.
          out.querySelectorAll("[data-fills]").forEach(function (el) {
            var field = document.getElementById(el.getAttribute("data-fills"));
            if (field) {
              field.value = el.getAttribute("data-value");
            }
          });
          document.body.dispatchEvent(new Event("files-changed"));
        } else {
          out.textContent = refusal(form, xhr ? xhr.status : 0);
        }
      });
  });

  // A message: its chosen files first, one request each, then the form.
  // Registered for the capture phase, so it runs before htmx sends the form.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-attach]")) {
      return;
    }
    var input = form.querySelector("input[type=file]");
    var files = input ? Array.prototype.slice.call(input.files) : [];
    if (files.length === 0) {
      return;
    }
    event.preventDefault();
    event.stopImmediatePropagation();
    var out = form.querySelector(".feedback");
    var list = form.querySelector(".attached-list");
    var bar = form.querySelector("progress");
    var button = form.querySelector("button[type=submit]");
    var total = 0;
    files.forEach(function (f) {
      total += f.size;
    });
    if (list.children.length + files.length > Number(form.getAttribute("data-max-count"))) {
      alertIn(out, form.getAttribute("data-too-many"));
      return;
    }
    if (total > Number(form.getAttribute("data-max"))) {
      alertIn(out, form.getAttribute("data-too-large"));
      return;
    }
    button.disabled = true;
    out.textContent = form.getAttribute("data-uploading");
    bar.max = total || 1;
    bar.value = 0;
    var before = 0;
    var next = function (i) {
      if (i === files.length) {
        // Each is in the list now: the form sends their fields.
        input.value = "";
        button.disabled = false;
        form.requestSubmit();
        return;
      }
      var file = files[i];
      upload(form, form.getAttribute("data-attach") + "?" + new URLSearchParams({name: file.name}).toString(), file,
        function (loaded) {
          bar.value = before + loaded;
        },
        function () {},
        function (xhr) {
          if (xhr && xhr.status === 200) {
            list.insertAdjacentHTML("beforeend", xhr.responseText);
            before += file.size;
            next(i + 1);
            return;
          }
          // The files sent so far stay in the list; the rest are chosen again.
          input.value = "";
          button.disabled = false;
          if (xhr && xhr.status === 422) {
            out.innerHTML = xhr.responseText;
          } else {
            alertIn(out, refusal(form, xhr ? xhr.status : 0));
          }
        });
    };
    next(0);
  }, true);

  // An attached file taken off the message before it is sent.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button[data-remove]");
    if (button) {
      button.closest("li").remove();
    }
  });

  // Read receipts: only for what a person has in front of them.
  var lastMarked = "";
  function markRead() {
    var form = document.getElementById("mark-read");
    if (!form || document.visibilityState !== "visible") {
      return;
    }
    var upTo = form.querySelector("input[name=up_to]").value;
    if (upTo === lastMarked) {
      return;
    }
    lastMarked = upTo;
    fetch(form.getAttribute("action"), {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "X-HearthNet-CSRF": csrf(form),
        "Content-Type": "application/x-www-form-urlencoded"
      },
      body: new URLSearchParams(new FormData(form)).toString()
    }).then(function (r) {
      if (!r.ok) {
        lastMarked = "";
      }
    }, function () {
      lastMarked = "";
    });
  }
  document.addEventListener("visibilitychange", markRead);
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target && event.target.id === "thread") {
      markRead();
    }
  });
  markRead();
})();
