// Render TeX math with the real KaTeX and MathJax 3 and report every error, as a browser would
// show it. Input (stdin): a JSON array of TeX strings (display math). Output (stdout): a JSON array
// with, for each input, a list of error messages (empty when both renderers accept it).
"use strict";
const katex = require("katex");
const { mathjax } = require("mathjax-full/js/mathjax.js");
const { TeX } = require("mathjax-full/js/input/tex.js");
const { SVG } = require("mathjax-full/js/output/svg.js");
const { liteAdaptor } = require("mathjax-full/js/adaptors/liteAdaptor.js");
const { RegisterHTMLHandler } = require("mathjax-full/js/handlers/html.js");
const { AllPackages } = require("mathjax-full/js/input/tex/AllPackages.js");

const adaptor = liteAdaptor();
RegisterHTMLHandler(adaptor);
// MathJax's defaults, as GitHub and JupyterLab run it, but with errors shown rather than
// rendered as red text (noerrors) or accepted as unknown macros (noundefined).
const packages = AllPackages.filter((p) => p !== "noerrors" && p !== "noundefined");
const document = mathjax.document("", { InputJax: new TeX({ packages }), OutputJax: new SVG() });

function mathjaxErrors(tex) {
  const node = document.convert(tex, { display: true });
  const html = adaptor.outerHTML(node);
  const errors = [];
  const re = /data-mjx-error="([^"]*)"/g;
  let m;
  while ((m = re.exec(html)) !== null) errors.push("MathJax: " + m[1]);
  return errors;
}

function katexErrors(tex) {
  try {
    katex.renderToString(tex, { displayMode: true, throwOnError: true });
    return [];
  } catch (e) {
    return ["KaTeX: " + e.message];
  }
}

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const results = JSON.parse(input).map((tex) => {
    let errors = [];
    try {
      errors = errors.concat(mathjaxErrors(tex));
    } catch (e) {
      errors.push("MathJax: " + e.message);
    }
    return errors.concat(katexErrors(tex));
  });
  process.stdout.write(JSON.stringify(results));
});
