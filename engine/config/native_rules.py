"""The TOML of a frontend's ACLs, request rules and routes → the rule model.

    [frontend.web]
    bind = "127.0.0.1:8080"
    backend = "app"                                   # the default backend
    acl = { is_api = "path_beg /api /v1",             # HAProxy ACL text; a list ORs several
            is_static = ["path_end -i .css .js", "hdr(host) -i static.example.com"] }
    rules = [                                         # http-request rules, in order
      { add-header = ["X-Via", "virtserve"] },
      { set-header = ["X-Api", "yes"], if = "is_api" },
      { del-header = "X-Debug", unless = "{ src 127.0.0.0/8 }" },
      { redirect = { scheme = "https", code = 301 }, if = "{ hdr(host) -i old.example.com }" },
      { redirect = { prefix = "https://new.example.com", drop-query = true } },
    ]
    routes = [                                        # use_backend: the first that holds
      { backend = "api", if = "is_api" },
      { backend = "static", if = "is_static || { path_beg /assets }" },
    ]

Conditions are HAProxy's text, parsed by engine/config/conditions.py. Called by native.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from virtserve.engine.config.conditions import define_acl, parse_condition
from virtserve.engine.config.rules import (
    HEADER_ACTIONS,
    REDIRECT_TYPES,
    Acl,
    Condition,
    HeaderRuleSpec,
    RedirectRuleSpec,
    RouteSpec,
)

if TYPE_CHECKING:
    from virtserve.engine.config.native import _Builder, _Table

FRONTEND_RULE_KEYS = ("acl", "rules", "routes")
BACKEND_RULE_KEYS = ("acl", "rules")  # a backend's rules apply to the requests routed to it
RULE_KEYS = (*HEADER_ACTIONS, "redirect", "if", "unless")
REDIRECT_KEYS = (*REDIRECT_TYPES, "code", "drop-query", "append-slash")
ROUTE_KEYS = ("backend", "if", "unless")


def frontend_kwargs(builder: _Builder, table: _Table) -> dict[str, Any]:
    named = _acls(builder, table) if "acl" in table else {}
    kwargs: dict[str, Any] = {}
    if "rules" in table:
        kwargs["rules"] = tuple(_rule(builder, path, body, named, table.label)
                                for path, body in _items(builder, table, "rules"))
    if "routes" in table:
        kwargs["routes"] = tuple(_route(builder, path, body, named, table.label)
                                 for path, body in _items(builder, table, "routes"))
    return kwargs


def backend_kwargs(builder: _Builder, table: _Table) -> dict[str, Any]:
    if "rules" not in table:
        if "acl" in table:
            _acls(builder, table)  # checked even when no rule reads them
        return {}
    return {"rules": frontend_kwargs(builder, table)["rules"]}


def _acls(builder: _Builder, table: _Table) -> dict[str, Acl]:
    from virtserve.engine.config.native import _Table

    label = f"the acl table of {table.label}"
    acls = _Table(builder.doc, table.path_of("acl"), table.raw["acl"][1], None, label)
    named: dict[str, Acl] = {}
    for name, (written, value) in acls.raw.items():
        path = acls.path + (written,)
        texts = value if isinstance(value, list) else [value]
        if not texts or not all(isinstance(t, str) for t in texts):
            raise builder.doc.error(path, f"acl {written!r} in {table.label}: expected ACL text like "
                                          f'"path_beg /api" or a list of them')
        for text in texts:
            try:
                named = define_acl(named, written, text, builder.doc.at(path))
            except ValueError as exc:
                raise builder.doc.error(path, f"acl {written!r} in {table.label}: {exc}") from None
    return named


def _items(builder: _Builder, table: _Table, key: str) -> list[tuple[tuple, Any]]:
    path, value = table.path_of(key), table.raw[key][1]
    if not isinstance(value, list):
        example = ('[{ backend = "api", if = "path_beg /api" }]' if key == "routes"
                   else '[{ add-header = ["X-Via", "virtserve"] }]')
        raise builder.doc.error(path, f"{key!r} in {table.label}: expected a list of tables like {example}")
    return [(path + (i,), body) for i, body in enumerate(value)]


def _condition(builder: _Builder, sub: _Table, named: dict[str, Acl], what: str) -> Condition | None:
    from virtserve.engine.config.native import _str

    if "if" in sub and "unless" in sub:
        raise builder.doc.error(sub.path_of("unless"), f"{what}: give 'if' or 'unless', not both")
    for key in ("if", "unless"):
        if key in sub:
            text = sub.get(key, _str)
            try:
                return parse_condition(text, named, unless=key == "unless")
            except ValueError as exc:
                raise builder.doc.error(sub.path_of(key), f"{what}: {key} {text!r}: {exc}") from None
    return None


def _rule(builder: _Builder, path: tuple, body: Any, named: dict[str, Acl], section: str) -> HeaderRuleSpec | RedirectRuleSpec:
    from virtserve.engine.config.native import _Table, _str

    label = f"rule #{path[-1] + 1} in {section}"
    sub = _Table(builder.doc, path, body, RULE_KEYS, label)
    actions = [key for key in (*HEADER_ACTIONS, "redirect") if key in sub]
    if len(actions) != 1:
        raise builder.doc.error(path, f"{label}: give exactly one action of {', '.join((*HEADER_ACTIONS, 'redirect'))}"
                                      + (f", not {' and '.join(actions)}" if actions else ""))
    action = actions[0]
    condition = _condition(builder, sub, named, label)
    where = builder.doc.at(sub.path_of(action))
    if action == "redirect":
        return _redirect(builder, sub, condition, where, label)
    value = sub.raw[action][1]
    if action == "del-header":
        name = sub.get(action, _str)
        return HeaderRuleSpec(action, name, "", condition, where)
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise builder.doc.error(sub.path_of(action), f'{label}: {action} takes ["Name", "value"], got {value!r}')
    return HeaderRuleSpec(action, value[0], value[1], condition, where)


def _redirect(builder: _Builder, sub: _Table, condition: Condition | None, where: str, label: str) -> RedirectRuleSpec:
    from virtserve.engine.config.native import _Table, _bool, _int, _str

    table = _Table(builder.doc, sub.path_of("redirect"), sub.raw["redirect"][1], REDIRECT_KEYS,
                   f"the redirect of {label}")
    types = [key for key in REDIRECT_TYPES if key in table]
    if len(types) != 1:
        raise builder.doc.error(table.path, f"{label}: a redirect needs exactly one of location, prefix, scheme"
                                            + (f", not {' and '.join(types)}" if types else ""))
    kwargs: dict[str, Any] = {}
    if "code" in table:
        kwargs["code"] = table.get("code", _int)
    for key in ("drop-query", "append-slash"):
        if key in table:
            kwargs[key.replace("-", "_")] = table.get(key, _bool)
    return RedirectRuleSpec(types[0], table.get(types[0], _str), condition=condition, where=where, **kwargs)


def _route(builder: _Builder, path: tuple, body: Any, named: dict[str, Acl], section: str) -> RouteSpec:
    from virtserve.engine.config.native import _Table, _str

    label = f"route #{path[-1] + 1} in {section}"
    sub = _Table(builder.doc, path, body, ROUTE_KEYS, label)
    if "backend" not in sub:
        raise builder.doc.error(path, f'{label} has no backend: add backend = "<name>"')
    condition = _condition(builder, sub, named, label)
    return RouteSpec(sub.get("backend", _str), condition, builder.doc.at(sub.path_of("backend")))
