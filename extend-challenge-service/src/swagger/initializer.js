// Loads the spec served next to this page, so the UI works under any BASE_PATH and
// without network access.
window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "./api.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
  });
};
