"""REST serving of registered models, speaking MLflow's scoring protocol.

Modules, in the order a request meets them:
- `config`: `ServeConfig`, the one place the server's defaults live.
- `errors`: `RequestError`, a refusal with its HTTP status (400/413/415/422) and a payload-free message.
- `parsing`: body bytes + content type -> the request's format and its raw data (JSON formats, CSV).
- `validation`: that data checked against the model signature -> one numpy array.
- `predictors`: the native model (sklearn pipeline, torch module) on that array; pyfunc fallback.
- `batching`: dynamic micro-batching of concurrent requests for torch models.
- `reload`: which model is served now, and following a registry alias to the next one.
- `challenger`: shadow and canary routing, per-version statistics, the canary guard.
- `shadow`, `shadow_worker`: shadow copies scored in a process of their own at the lowest CPU priority.
- `prediction_log`: served inputs and outputs as JSON lines, for training-serving skew checks.
- `heap`: the startup heap frozen out of the garbage collector's full passes (they stalled requests).
- `app`: the ASGI app (starlette) and `serve()` (uvicorn).

Nothing heavy is imported here, so `mlops --help` stays fast.
"""
