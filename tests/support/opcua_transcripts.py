"""What an OPC UA capture must decode to: the transcript its real peers wrote while it was recorded."""

from __future__ import annotations

SCENARIOS = ("none_anonymous", "none_username", "none_plaintext_password", "failed_login", "sign",
             "sign_and_encrypt")


# transcript action -> the request that carries it
REQUESTS = {"browse": "BrowseRequest", "read": "ReadRequest", "write": "WriteRequest", "call": "CallRequest",
            "subscribe": "CreateSubscriptionRequest", "monitor": "CreateMonitoredItemsRequest"}


def _answer(events, request):
    """The response to a request: same connection, same request id, the other way."""
    return next((e for e in events if e["flow"] == request["flow"] and e["direction"] == "response"
                 and e.get("request_id") == request["request_id"] and e["message_type"] == "MSG"), {})


def _connect_problems(connect, events):
    problems = []
    client = [e for e in events if e["sport"] == connect["client_port"] and e["src"] == connect["client_host"]]
    flow = client[0]["flow"] if client else None
    mine = [e for e in events if e["flow"] == flow]
    hello = next((e for e in mine if e["message_type"] == "HEL"), {})
    if hello.get("endpoint_url") != connect["endpoint_url"]:
        problems.append(f"connect: hello endpoint {hello.get('endpoint_url')}")
    policies = {e.get("security_policy") for e in mine if e["message_type"] == "OPN"}
    if policies != {connect["security_policy_uri"]}:
        problems.append(f"connect: policies {policies}")
    modes = {e.get("security_mode") for e in mine if e["message_type"] == "MSG"}
    if modes != {connect["security_mode"]}:
        problems.append(f"connect: modes {modes}")
    if connect["security_mode"] == "SignAndEncrypt":
        if [e for e in mine if e.get("service")]:
            problems.append("connect: a service was read through encryption")
        return problems
    activate = next((e for e in mine if e["function"] == "ActivateSessionRequest"), {})
    if (activate.get("identity_token"), activate.get("user_name")) != (connect["token_type"], connect["username"]):
        problems.append(f"connect: identity {activate.get('identity_token')}/{activate.get('user_name')}")
    answer = _answer(mine, activate) if activate else {}
    if connect["error"]:
        status = connect["error"].split(":")[0]
        if (answer.get("function"), answer.get("status_name"), answer.get("request_service")) != \
                ("ServiceFault", status, "ActivateSessionRequest"):
            problems.append(f"connect: refusal {answer.get('function')} {answer.get('status_name')}")
        if answer.get("user_name") != connect["username"]:
            problems.append("connect: the refusal does not name the user")
    elif answer.get("status_name") != "Good":
        problems.append(f"connect: activation answered {answer.get('status_name')}")
    session = next((e for e in mine if e["function"] == "CreateSessionRequest"), {})
    if session.get("endpoint_url") != connect["endpoint_url"]:
        problems.append(f"connect: session endpoint {session.get('endpoint_url')}")
    return problems


def _action_problems(t, request, events):
    """One client action against the request that carried it and the response to it."""
    action, node = t["action"], t["node_id"]
    response = _answer(events, request)
    where = f"{action} {node} (frame {request['frame']})"
    problems = []
    if action in ("browse", "read", "write", "monitor") and request.get("node_ids") != [node]:
        problems.append(f"{where}: node ids {request.get('node_ids')}")
    if action in ("read", "write") and response.get("node_ids") != [node]:
        problems.append(f"{where}: the response names {response.get('node_ids')}")
    if action == "browse" and response.get("targets") != t["value"]:
        problems.append(f"{where}: targets {response.get('targets')}")
    if action == "read" and response.get("values") != [t["value"]]:
        problems.append(f"{where}: read {response.get('values')}")
    if action == "write" and (request.get("values"), response.get("results")) != ([t["value"]], ["Good"]):
        problems.append(f"{where}: wrote {request.get('values')}, answered {response.get('results')}")
    if action == "call":
        if (request.get("object_node_ids"), request.get("node_ids")) != ([t["object_id"]], [node]):
            problems.append(f"{where}: called {request.get('object_node_ids')}.{request.get('node_ids')}")
        if response.get("values") != [[t["value"]]]:
            problems.append(f"{where}: returned {response.get('values')}")
    if action == "subscribe":
        got = (request.get("publishing_interval"), response.get("subscription_id"))
        if got != (t["publishing_interval"], t["subscription_id"]):
            problems.append(f"{where}: subscription {got}")
    if action == "monitor":
        notified = [v for e in events if e["function"] == "PublishResponse" and e["flow"] == request["flow"]
                    for n, v in zip(e.get("node_ids", ()), e.get("values", ())) if n == node]
        if (request.get("subscription_id"), notified) != (t["subscription_id"], t["value"]):
            problems.append(f"{where}: subscription {request.get('subscription_id')} notified {notified}")
    return problems


def transcript_problems(transcript, events):
    """Everything the client did that icsguard does not show, as readable lines."""
    events = [e for e in events if e["proto"] == "opcua"]
    problems = []
    clear = True
    requests = {name: [e for e in events if e["function"] == name] for name in REQUESTS.values()}
    for t in transcript:
        if t["action"] == "connect":
            problems += _connect_problems(t, events)
            clear = t["security_mode"] != "SignAndEncrypt"
        elif t["action"] in REQUESTS and clear:
            pending = requests[REQUESTS[t["action"]]]
            if not pending:
                problems.append(f"{t['action']} {t['node_id']}: no {REQUESTS[t['action']]} decoded")
                continue
            problems += _action_problems(t, pending.pop(0), events)
    problems += [f"{name} at frame {e['frame']} is not in the transcript" for name, left in requests.items()
                 for e in left]
    return problems

