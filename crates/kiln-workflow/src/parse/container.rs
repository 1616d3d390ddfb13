//! `container:` and `services:` of a job.

use indexmap::IndexMap;

use crate::model::{Container, StringMap};
use crate::yaml::{Node, NodeKind};

use super::{Ctx, scope};

const CONTAINER_KEYS: &[&str] = &["image", "credentials", "env", "ports", "volumes", "options"];
const SERVICE_KEYS: &[&str] = &[
    "image",
    "credentials",
    "env",
    "ports",
    "volumes",
    "options",
    "entrypoint",
    "command",
];

/// A job container or one service: an image name or a mapping.
/// `key` is the mapping key the container is under (for "missing image").
pub(super) fn parse(ctx: &mut Ctx, key: &Node, node: &Node, service: bool) -> Option<Container> {
    let mut container = Container {
        span: node.span,
        ..Container::default()
    };
    if let NodeKind::Scalar(..) = node.kind {
        container.image = if service {
            ctx.non_empty_string(node)?
        } else {
            ctx.string(node)?
        };
        return Some(container);
    }
    let (keys, owner) = if service {
        (SERVICE_KEYS, "a service")
    } else {
        (CONTAINER_KEYS, "\"container\"")
    };
    let fields = ctx.fields(node, keys, owner);
    for f in &fields {
        match f.name {
            // An empty image is allowed: with a matrix it skips the container.
            "image" => container.image = ctx.string(f.value).unwrap_or_default(),
            "credentials" => {
                ctx.scope(f.value, &scope::CREDENTIALS);
                container.credentials = credentials(ctx, f.value);
            }
            "env" => {
                ctx.scope(f.value, &scope::RUNNER);
                container.env = ctx.string_map(f.value);
            }
            "ports" => container.ports = ctx.string_seq(f.value).unwrap_or_default(),
            "volumes" => container.volumes = ctx.string_seq(f.value).unwrap_or_default(),
            "options" => container.options = ctx.string(f.value),
            "entrypoint" => container.entrypoint = ctx.string(f.value),
            "command" => container.command = ctx.string(f.value),
            _ => {}
        }
    }
    if node.as_map().is_some() && !fields.iter().any(|f| f.name == "image") {
        let what = match key.as_scalar() {
            Some(id) if service => format!("service \"{id}\""),
            _ => "container".to_string(),
        };
        ctx.error(key.span, format!("{what} is missing \"image\""));
        return None;
    }
    node.as_map()?;
    Some(container)
}

/// `services:`: service ids to containers.
pub(super) fn services(ctx: &mut Ctx, node: &Node) -> IndexMap<String, Container> {
    let mut services = IndexMap::new();
    for field in ctx.entries(node) {
        if let Some(service) = parse(ctx, field.key, field.value, true) {
            services.insert(field.name.to_string(), service);
        }
    }
    services
}

fn credentials(ctx: &mut Ctx, node: &Node) -> StringMap {
    let mut map = StringMap::new();
    for f in ctx.fields(node, &["username", "password"], "\"credentials\"") {
        if let Some(value) = ctx.non_empty_string(f.value) {
            map.insert(f.name.to_string(), value);
        }
    }
    map
}
