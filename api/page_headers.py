"""The headers of every HTML page the API serves (the dashboard, its static copy, ``/docs``)."""

# plotly injects <style> elements, hence 'unsafe-inline' for styles only; charts are SVG (no WebGL,
# whose regl shaders would need 'unsafe-eval')
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache"}
