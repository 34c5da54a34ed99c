//! The swarm routes, answered as a dockerd that is not part of a swarm
//! answers them (503 and its words): berth runs no swarm — its way past one
//! host is Kubernetes, through CRI — and clients rely on those answers
//! (docker-py's `leave_swarm(force=True)` takes the 503 as "already left").

use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::routing::{any, get, post};
use axum::Router;

use super::images::Params;
use super::{ApiError, AppState};

/// dockerd's words for cluster state asked of a node in no swarm.
const NOT_A_MANAGER: &str =
    "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
/// dockerd's words for leaving when in no swarm.
const NOT_IN_A_SWARM: &str = "This node is not part of a swarm";
/// Where dockerd would make or join a swarm.
const NO_SWARM_HERE: &str = "berth does not run a swarm: this node stays out of one. \
    To run containers on more than one host, let Kubernetes schedule onto berth through its CRI socket";

fn unavailable(message: &str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
}

async fn not_a_manager() -> ApiError {
    unavailable(NOT_A_MANAGER)
}

async fn not_in_a_swarm() -> ApiError {
    unavailable(NOT_IN_A_SWARM)
}

async fn no_swarm_here() -> ApiError {
    unavailable(NO_SWARM_HERE)
}

/// `/services/{id}[/...]`: for `GET /services/{id}/logs` dockerd checks the
/// streams asked for before the swarm.
async fn service(Path(rest): Path<String>, RawQuery(q): RawQuery) -> ApiError {
    let params = Params::parse(q.as_deref());
    if rest.ends_with("/logs") && !params.flag("stdout") && !params.flag("stderr") {
        return ApiError::internal("Bad parameters: you must choose at least one stream");
    }
    unavailable(NOT_A_MANAGER)
}

/// The swarm, node, service, task, secret and config routes.
pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route("/swarm", get(not_a_manager))
        .route("/swarm/init", post(no_swarm_here))
        .route("/swarm/join", post(no_swarm_here))
        .route("/swarm/leave", post(not_in_a_swarm))
        .route("/swarm/update", post(not_a_manager))
        .route("/swarm/unlock", post(not_a_manager))
        .route("/swarm/unlockkey", get(not_a_manager))
        .route("/services", any(not_a_manager))
        .route("/services/{*rest}", any(service));
    for kind in ["nodes", "tasks", "secrets", "configs"] {
        router = router.route(&format!("/{kind}"), any(not_a_manager)).route(&format!("/{kind}/{{*rest}}"), any(not_a_manager));
    }
    router
}
