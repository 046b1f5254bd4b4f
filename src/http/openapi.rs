//! `GET /api/v1/openapi.json`: the API's OpenAPI 3.1 description, made from
//! the handlers' annotations and the very types they answer with, so it
//! follows the code. CI checks real answers against it (schemathesis).

use std::sync::LazyLock;

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use warp::{Filter, Reply};

use super::error::ErrorBody;
use super::{accounts, archive, download, email_links, events, frames, ops, upload, videos};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "The Video Project",
        description = "Upload a video, get back a zip of its frames. Errors are \
            `{\"error\": {\"code\", \"message\"}}` with the status given; any call may \
            also answer 503 with Retry-After when the node cannot serve it now.",
    ),
    paths(
        accounts::create_user, accounts::sign_in, accounts::sign_out,
        accounts::get_me, accounts::patch_me, accounts::change_password,
        email_links::verify_email, email_links::resend_verification,
        email_links::request_reset, email_links::reset_password,
        upload::upload, videos::list, videos::show, videos::rename, videos::delete,
        videos::reprocess, videos::delete_many, archive::create, archive::download,
        download::download, frames::list, frames::frame, frames::thumbnail, frames::sheet,
        events::video_events, events::user_events,
        ops::health, ops::ready, ops::metrics,
    ),
    modifiers(&Conventions),
    tags(
        (name = "accounts", description = "Sign up, sign in and out, preferences, email verification, password reset"),
        (name = "videos", description = "Upload, follow, download and delete videos"),
        (name = "frames", description = "A done video's frames, their thumbnails and its contact sheet"),
        (name = "operations", description = "Probes and metrics"),
    ),
)]
struct ApiDoc;

/// What holds for every call, added once rather than on each: the ways to
/// authenticate, 401 on the calls that need it, the refusals of any JSON
/// body (see `json_body`), 503 on all.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("biscuit")
                    .description(Some("The token from POST /api/v1/sessions"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "download_link",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "The token in a video's download_url",
            ))),
        );
        components.add_security_scheme(
            "frames_link",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "The token in a video's contact_sheet_url, or in a frame's url or thumbnail_url",
            ))),
        );
        let mut schemas = Vec::new();
        <ErrorBody as utoipa::ToSchema>::schemas(&mut schemas);
        schemas.push((
            <ErrorBody as utoipa::ToSchema>::name().into_owned(),
            <ErrorBody as utoipa::PartialSchema>::schema(),
        ));
        components.schemas.extend(schemas);
        for item in doc.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let takes_json = operation.request_body.as_ref().is_some_and(
                    |b| matches!(b, RefOr::T(b) if b.content.contains_key("application/json")),
                );
                let responses = &mut operation.responses.responses;
                if takes_json {
                    for (status, description) in [
                        ("400", "Malformed JSON"),
                        (
                            "408",
                            "`request_timeout`: the body did not arrive whole in time",
                        ),
                        ("411", "`length_required`: a body without a Content-Length"),
                        ("413", "`too_large`: a body over 64 KiB"),
                        ("422", "Well-formed JSON of the wrong shape"),
                    ] {
                        responses
                            .entry(status.into())
                            .or_insert_with(|| error(description));
                    }
                }
                if operation.security.is_some() {
                    responses
                        .entry("401".into())
                        .or_insert_with(|| error("No valid token, or a revoked one"));
                }
                responses.entry("503".into()).or_insert_with(|| {
                    error("The node cannot serve this now (database unreachable, at its limits); see Retry-After")
                });
            }
        }
    }
}

fn error(description: &str) -> RefOr<Response> {
    let body = utoipa::openapi::ContentBuilder::new()
        .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
        .build();
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", body)
            .build(),
    )
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
});

/// The document as JSON.
pub fn document() -> &'static str {
    &DOCUMENT
}

pub fn openapi_route()
-> impl Filter<Extract = (impl Reply,), Error = std::convert::Infallible> + Clone {
    warp::any().map(|| warp::reply::with_header(document(), "content-type", "application/json"))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn doc() -> Value {
        serde_json::from_str(document()).unwrap()
    }

    #[test]
    fn it_is_openapi_3_1_with_every_call() {
        let doc = doc();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = doc["paths"].as_object().unwrap();
        for (path, method) in [
            ("/api/v1/users", "post"),
            ("/api/v1/sessions", "post"),
            ("/api/v1/sessions", "delete"),
            ("/api/v1/me", "get"),
            ("/api/v1/me", "patch"),
            ("/api/v1/videos", "post"),
            ("/api/v1/videos", "get"),
            ("/api/v1/videos/{id}", "get"),
            ("/api/v1/videos/{id}", "delete"),
            ("/api/v1/videos/{id}/frames.zip", "get"),
            ("/api/v1/videos/{id}/frames", "get"),
            ("/api/v1/videos/{id}/frames/{index}", "get"),
            ("/api/v1/videos/{id}/frames/{index}/thumbnail", "get"),
            ("/api/v1/videos/{id}/contact-sheet", "get"),
            ("/api/v1/videos/{id}/events", "get"),
            ("/api/v1/events", "get"),
            ("/healthz", "get"),
            ("/readyz", "get"),
            ("/metrics", "get"),
        ] {
            assert!(paths[path][method].is_object(), "{method} {path}");
        }
    }

    /// The document describes exactly the routes served: every method of
    /// every route in the table (HEAD under its GET), and nothing else.
    #[test]
    fn the_document_describes_the_route_table() {
        let doc = doc();
        let mut described = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                described.push(format!("{} {path}", method.to_uppercase()));
            }
        }
        let mut served = Vec::new();
        for route in super::super::route::ROUTES {
            for (method, endpoint) in route.serves {
                if endpoint.described() && method != warp::http::Method::HEAD {
                    served.push(format!("{method} {}", route.pattern));
                }
            }
        }
        described.sort();
        served.sort();
        assert_eq!(described, served);
    }

    /// Clients generate a function per operation id: two calls must not
    /// share one (a handler's name is its id unless it says otherwise).
    #[test]
    fn every_operation_id_is_unique() {
        let doc = doc();
        let mut seen = std::collections::BTreeMap::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap().to_owned();
                let at = format!("{method} {path}");
                if let Some(earlier) = seen.insert(id.clone(), at.clone()) {
                    panic!("{id} names both {earlier} and {at}");
                }
            }
        }
    }

    #[test]
    fn schemas_are_the_types_the_handlers_answer_with() {
        let doc = doc();
        let video = &doc["components"]["schemas"]["VideoView"];
        let fields: Vec<&str> = video["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for field in [
            "id",
            "filename",
            "status",
            "progress",
            "created_at",
            "updated_at",
            "size_bytes",
            "options",
            "frames",
            "zip_bytes",
            "error",
            "download_url",
            "name",
            "source_id",
            "media",
            "finished_at",
            "expires_at",
            "error_code",
            "queue_position",
        ] {
            assert!(fields.contains(&field), "{field} in {fields:?}");
        }
        let states = &doc["components"]["schemas"]["JobState"]["enum"];
        for s in crate::jobs::JobState::ALL {
            assert!(
                states
                    .as_array()
                    .unwrap()
                    .contains(&Value::from(s.as_str())),
                "{s:?}"
            );
        }
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    }

    #[test]
    fn conventions_reach_every_call() {
        let doc = doc();
        let me = &doc["paths"]["/api/v1/me"]["get"];
        assert!(me["responses"]["401"].is_object());
        assert!(me["security"].is_array());
        let health = &doc["paths"]["/healthz"]["get"];
        assert!(health["responses"]["401"].is_null());
        assert!(health["responses"]["503"].is_object());
        let patch = &doc["paths"]["/api/v1/me"]["patch"]["responses"];
        for status in ["400", "413", "422"] {
            assert!(patch[status].is_object(), "PATCH /me {status}");
        }
        assert!(doc["paths"]["/api/v1/videos"]["get"]["responses"]["413"].is_null());
    }
}
