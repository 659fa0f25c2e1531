package admin

import "embed"

// uiFiles is the dashboard: plain HTML, CSS and JavaScript, no build step.
//
//go:embed ui
var uiFiles embed.FS
