"""The pages officials open: server-rendered HTML, no build step, charts as inline SVG."""
