"""The registry of key points, devices, bindings and administrative units: the denominators."""
