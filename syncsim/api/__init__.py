"""The HTTP API: the Starlette app (:mod:`~syncsim.api.app`), its routes (:mod:`~syncsim.api.strava`, ...),
HTTP plumbing (:mod:`~syncsim.api.http`), users' tokens (:mod:`~syncsim.api.auth`), the OpenAPI document
(:mod:`~syncsim.api.openapi`), serving it (:mod:`~syncsim.api.serve`) and Vercel's entry
(:mod:`~syncsim.api.vercel`). Import from the module that defines a name."""
