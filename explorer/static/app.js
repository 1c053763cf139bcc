// dmarc-exporter report explorer: the theme toggle and the XML view.
// Everything else is plain links and forms.
(function () {
	"use strict";
	var root = document.documentElement;

	function systemTheme() {
		return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
	}
	function storedTheme() {
		try { return localStorage.getItem("theme"); } catch (e) { return null; }
	}
	root.setAttribute("data-theme", storedTheme() || systemTheme());

	document.addEventListener("DOMContentLoaded", function () {
		var toggle = document.getElementById("theme-toggle");
		if (toggle) {
			toggle.addEventListener("click", function () {
				var next = root.getAttribute("data-theme") === "dark" ? "light" : "dark";
				root.setAttribute("data-theme", next);
				try { localStorage.setItem("theme", next); } catch (e) { /* private mode: not kept */ }
			});
		}

		var button = document.getElementById("show-xml");
		if (button) {
			button.addEventListener("click", function () {
				var pre = document.getElementById("xml");
				if (!pre.classList.contains("hidden")) {
					pre.classList.add("hidden");
					button.textContent = "Show the original XML";
					return;
				}
				button.disabled = true;
				fetch(button.getAttribute("data-src"), { credentials: "same-origin" })
					.then(function (r) {
						if (!r.ok) { return r.text().then(function (t) { throw new Error(t || r.statusText); }); }
						return r.text();
					})
					.then(function (text) { pre.textContent = text; })
					.catch(function (err) { pre.textContent = "Could not load the report: " + err.message; })
					.then(function () {
						pre.classList.remove("hidden");
						button.disabled = false;
						button.textContent = "Hide the original XML";
					});
			});
		}

		// A filter change applies at once; the form still works without
		// this. A month and a from/to range exclude each other, and empty
		// fields stay out of the URL.
		var form = document.querySelector("form.filters");
		if (form) {
			form.addEventListener("change", function (ev) {
				var name = ev.target.name;
				if (name === "month" && ev.target.value) {
					form.elements.from.value = "";
					form.elements.to.value = "";
				} else if ((name === "from" || name === "to") && ev.target.value) {
					form.elements.month.value = "";
				}
				form.requestSubmit();
			});
			form.addEventListener("submit", function () {
				Array.prototype.forEach.call(form.elements, function (el) {
					if (el.name && !el.value && el.type !== "submit") { el.disabled = true; }
				});
			});
			// Back to a page kept in memory: its fields are usable again.
			window.addEventListener("pageshow", function () {
				Array.prototype.forEach.call(form.elements, function (el) { el.disabled = false; });
			});
		}
	});
})();
