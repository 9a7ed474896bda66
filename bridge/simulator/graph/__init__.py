"""A local fake of Meta's Graph API, as far as the WhatsApp Cloud API goes.

The real Graph API cannot be reached from the test machines, so the tests point the
bridge's ``graph_url`` at this server; the local demo does the same, with the citizen
simulator (bridge/simulator/__init__.py) on top.  It follows the project's API notes
("WhatsApp Cloud API") and is deliberately strict: every request the bridge makes is
checked the way Meta checks it, and anything malformed is answered with Meta's error
envelope, so a wrong request fails the test instead of failing in production.  It serves
only what the bridge sends: text, interactive (list, reply buttons) and template
messages, to a number (``to``) or a business-scoped user id (``recipient``), and
mark-reads; any other message type gets Graph's invalid-parameter answer (400, code 100).

Graph side (the bridge calls us)::

    POST /{version}/{phone_number_id}/messages   send a message, or mark one read
    GET  /{version}/{media_id}                   media step 1: metadata and a download URL
    GET  /media-bytes/{media_id}?token=...       media step 2: the bytes (bearer required)

What Meta keeps between requests, the fake keeps too:

* the approved templates: ``FakeGraph(templates={"answer_ready": {"language": "id",
  "body_params": 1, "quick_replies": 1}})`` or :meth:`FakeGraph.approve_template`; an
  unknown name or language is answered 404/132001, a wrong parameter count 400/132000;
* the 24-hour customer-service window, by the fake's own ``clock`` (injectable, UTC):
  each citizen message posted through :meth:`FakeGraph.post_webhook` opens it for that
  citizen's wa_id and BSUID.  A free-form send (not a template) to a citizen outside it
  is answered 200 with a wamid like any other, and then, if ``status_webhook_url`` is
  set, a ``failed`` status with error 131047 is posted there (signed) in the background.
  ``enforce_window=False`` turns this off.

Webhook side (we play Meta calling the bridge): :meth:`FakeGraph.text`,
:meth:`FakeGraph.image`, :meth:`FakeGraph.document`, the answers
:meth:`FakeGraph.list_reply`, :meth:`FakeGraph.button_reply`,
:meth:`FakeGraph.quick_reply` (or :meth:`FakeGraph.choose` from a recorded send), the
system messages :meth:`FakeGraph.user_changed_number` and
:meth:`FakeGraph.user_changed_user_id`, :meth:`FakeGraph.status` and
:meth:`FakeGraph.notification` build notifications in the documented shape, and
:meth:`FakeGraph.post_webhook` delivers them signed.

What the tests read back:

* ``sent`` – one :class:`SentRecord` per accepted ``POST .../messages``, in arrival
  order, mark-reads included: ``{"body": <the JSON body as the bridge sent it>,
  "id": <the wamid we answered with, or None for a mark-read>}``;
  :meth:`FakeGraph.sent_to` says whom one went to (``to``, else ``recipient``),
  :meth:`FakeGraph.messages_to` and :meth:`FakeGraph.texts_to` pick a citizen's.
* ``rejected`` – one :class:`RejectedRecord` per request answered with an error
  (malformed body, bad token, injected failure, ...), to explain a failing test.
* ``window_refusals`` – the accepted sends the 24-hour window refused;
  ``posted_statuses`` – the status webhooks the fake posted on its own
  (:meth:`FakeGraph.settle` waits for those under way).
* ``media_requests`` / ``media_downloads`` – media ids asked for in step 1 / step 2.

The modules, by job:

* :mod:`.checks` – what Meta checks on a request (token, version, send body, template)
  and the error envelope it answers with;
* :mod:`.server` – :class:`FakeGraph`: the aiohttp server, its routes, the records,
  media storage, templates, injected failures (``fail_next``), ``wait_for_sent``;
* :mod:`.window` – the 24-hour window: who last wrote when;
* :mod:`.webhooks` – Meta's side of the webhook: building, signing, posting.

Typical use::

    async with FakeGraph() as graph:
        await graph.post_webhook(bridge_url, graph.text("6281234567890", "KTP saya?"))
        reply = await graph.wait_for_sent(lambda r: graph.sent_to(r) == "6281234567890")
"""

from bridge.simulator.graph.checks import ApprovedTemplate, GraphError, validate_send_body
from bridge.simulator.graph.server import FakeGraph, PostedStatus, RejectedRecord, SentRecord
from bridge.simulator.graph.webhooks import STATUS_VALUES, Webhooks, new_wamid, system_clock
from bridge.simulator.graph.window import WINDOW, CustomerWindows

__all__ = [
    "STATUS_VALUES",
    "WINDOW",
    "ApprovedTemplate",
    "CustomerWindows",
    "FakeGraph",
    "GraphError",
    "PostedStatus",
    "RejectedRecord",
    "SentRecord",
    "Webhooks",
    "new_wamid",
    "system_clock",
    "validate_send_body",
]
