"""How each endpoint's calls may be ordered on replay: one registry, one decision per endpoint.

The uploader schedules by it; the emulator's comparison checks order by it.

* ``create``: the experiment's creation; nothing of that experiment is sent before its key is
  known and recorded (calls journaled before it, by another rank, wait for it);
* ``barrier``: stop, archive, delete, restore, a model's registration: sent after everything
  of the experiment logged before it has settled, and nothing of that experiment logged after
  it goes before it;
* ``global``: project and viz-instance calls (create/update/notes/delete project, store
  saves): they can change what later calls refer to (a project created before experiments are
  put into it), so they are applied alone, in journal order, between everything before and
  everything after them (they are rare);
* ``ordered``: calls whose effect depends on order go through a *stream*, one call at a time
  in journal order: a parameter or "other" of one name, the html, the tags, code, graph, git,
  system details, start/end time, keep-alive, an asset of one file name (overwrite), a
  symlink;
* ``positioned``: calls that carry their own position (metric points, output lines, system
  samples) may be sent concurrently. Their stream key is the whole call (payload and time), so
  only *identical* calls are serialised, which is what lets a read-back count copies
  unambiguously.

``ORDERING`` names every catalogue endpoint (a test fails when one is missing); an ordered
endpoint may name the field that splits it into independent streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

CREATE: Final = "create"
BARRIER: Final = "barrier"
GLOBAL: Final = "global"
ORDERED: Final = "ordered"
POSITIONED: Final = "positioned"


@dataclass(frozen=True)
class Order:
    kind: str
    stream_field: str | None = None  # ordered endpoints: one stream per value of this field


ORDERING: Final[dict[str, Order]] = {
    "experiment_create": Order(CREATE),
    "experiment_stop": Order(BARRIER),
    "experiment_archive": Order(BARRIER),
    "experiment_delete": Order(BARRIER),
    "experiment_restore": Order(BARRIER),
    "experiment_keepalive": Order(ORDERED),
    "experiment_start_end_time": Order(ORDERED),
    "log_metric": Order(POSITIONED),
    "log_parameter": Order(ORDERED, "parameterName"),
    "log_other": Order(ORDERED, "key"),
    "log_html": Order(ORDERED),
    "add_tags": Order(ORDERED),
    "log_output": Order(POSITIONED),
    "log_graph": Order(ORDERED),
    "set_code": Order(ORDERED),
    "upload_asset": Order(ORDERED, "fileName"),
    "upload_text_sample": Order(ORDERED),
    "upload_git_patch": Order(ORDERED),
    "git_metadata": Order(ORDERED),
    "system_details": Order(ORDERED),
    "gpu_metrics": Order(POSITIONED),
    "ram_metrics": Order(POSITIONED),
    "cpu_metrics": Order(POSITIONED),
    "load_metrics": Order(POSITIONED),
    "project_create": Order(GLOBAL),
    "project_delete": Order(GLOBAL),
    "project_symlink": Order(ORDERED, "projectName"),
    "project_notes": Order(GLOBAL),
    "project_update": Order(GLOBAL),
    "viz_store_save": Order(GLOBAL),
    # the SDK's routes for what no documented endpoint carries
    "clientlib_asset_upload": Order(ORDERED, "fileName"),  # a remote asset (overwrite)
    "clientlib_log_remote_model": Order(ORDERED, "modelName"),
    # after the model's files (and everything else logged before it) have settled
    "registry_model_item_create": Order(BARRIER),
    "experiment_dependencies": Order(ORDERED),
    "experiment_file_path": Order(ORDERED),
    "experiment_cloud_details": Order(ORDERED),
    "clientlib_system_details": Order(ORDERED),
    # a 3D point cloud; same-name clouds in journal order (its read-back counts them)
    "clientlib_points_3d": Order(ORDERED, "userFileName"),
}


def kind_of(endpoint: str) -> str:
    return ORDERING[endpoint].kind


def stream_key(call: Any) -> Any:
    """The ordering stream of a call (anything with ``experiment_id``, ``endpoint``,
    ``ts_ms``, ``text`` and ``payload``); None for creates, barriers and global calls, which
    are ordered on their own."""
    order = ORDERING[call.endpoint]
    if order.kind == POSITIONED:
        return (call.experiment_id, call.endpoint, call.ts_ms, call.text)
    if order.kind != ORDERED:
        return None
    if order.stream_field:  # (only here is the payload parsed)
        return (call.experiment_id, call.endpoint, call.payload.get(order.stream_field))
    return (call.experiment_id, call.endpoint)
