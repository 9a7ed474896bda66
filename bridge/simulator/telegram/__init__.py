"""A local fake of the Telegram Bot API, for the tests and the local demo.

The real Bot API cannot be reached from the test machines, so the tests point the bridge's
``[telegram] api_url`` at this server.  It follows the project's API notes ("Telegram Bot
API") and is deliberately strict: a malformed request is answered the way Telegram answers
it (the envelope ``{"ok": false, "error_code": N, "description": "..."}``, HTTP status N),
so a wrong request fails the test instead of failing in production.  Unknown parameters
are ignored, as Telegram ignores them; a known one of the wrong type or value is 400.

Bot side (the bridge calls us), ``GET`` with a query string or ``POST`` with JSON, a form
or a query string; method names in any case::

    /bot{token}/getMe            the bot's User
    /bot{token}/getUpdates       offset (confirms every update below it), limit (clamped to
                                 1-100), timeout (long poll, at most 50 s), allowed_updates;
                                 409 while a webhook is set, and a poll still waiting is
                                 answered 409 when another one arrives
    /bot{token}/setWebhook       url (https://, on port 80, 88, 443 or 8443; the fake also
                                 takes http:// to 127.0.0.1/localhost, since the tests run
                                 on loopback), secret_token, allowed_updates, drop_pending_updates
    /bot{token}/deleteWebhook    drop_pending_updates
    /bot{token}/getWebhookInfo   url, pending_update_count, last_error_date/_message
    /bot{token}/sendMessage      chat_id, text, parse_mode (HTML, MarkdownV2), reply_markup
                                 (an inline keyboard only), reply_parameters, ...
    /bot{token}/answerCallbackQuery   callback_query_id (one the fake sent, answered once), text
    /bot{token}/getFile          file_id -> File; over 20 MB is "file is too big"
    /file/bot{token}/{file_path} the bytes of a file getFile handed out

A wrong token is 401 "Unauthorized", an unknown method 404 "Not Found".  The fake keeps
what Telegram keeps between requests: the queued updates (24 hours at most, by the fake's
``clock``), the webhook (queued updates are POSTed to it one at a time in update_id order,
with ``X-Telegram-Bot-Api-Secret-Token``; a non-2xx answer or a connection error keeps the
update queued and it is retried every ``webhook_retry_interval`` seconds), the chats and
their messages (message ids count per chat, both sides together), the callback queries,
the files, and who blocked the bot (:meth:`FakeBotApi.block`: 403).  Rate limits, in real
time: more than ``per_chat_burst`` (3) messages to one chat or ``overall_per_second`` (30)
in all within a second are answered 429 with ``parameters.retry_after`` 1
(``rate_limits = False`` turns them off).  Text length is counted in Python characters
(Telegram counts UTF-16 code units: the same for Indonesian text, not for emoji).

Citizen side (we play the users): a user is a :class:`TgUser`, whose private chat has
their user id as chat id.  :meth:`FakeBotApi.text`, ``photo``, ``document``, ``voice``,
``video``, ``location``, ``contact``, ``edit`` (an ``edited_message``), ``callback`` and
``choose`` (a ``callback_query`` on a bot message's inline button) each build an Update,
queue it (or hand it to the webhook) and return it; a chat exists for ``sendMessage`` only
once its user wrote.  :meth:`FakeBotApi.deliver_webhook` POSTs any update to any URL with
any secret (a wrong one, say).

What the tests read back: ``sent`` (one :class:`SentMessage` per accepted sendMessage:
chat_id, text as shown, params, message), ``rejected`` (every error answer: method,
error_code, description, params), ``get_updates_calls``, ``webhook_posts``,
``answered_callbacks``, ``downloads`` (file_ids), ``confirmed_through`` and
:meth:`FakeBotApi.pending_updates`; ``listeners`` are called with each accepted send (the
demo shows the bot's messages through them).  :meth:`FakeBotApi.fail_next` answers the
next matching call(s) with any error; :meth:`FakeBotApi.wait_for_sent` and
:meth:`FakeBotApi.settle` wait for a send and for the webhook to take every update.

The modules, by job: :mod:`.server` (:class:`FakeBotApi`: routes, checks, queue, webhook,
limits, records) and :mod:`.updates` (the users, their chats and files, the Update
builders, and how a bot message's text and keyboard must look).

Typical use::

    api = FakeBotApi(token="123456:TEST-token", bot_username="pengaduan_bot")
    await api.start()                       # the bridge's api_url is api.url
    citizen = TgUser(7001, "Siti", username="siti")
    api.text(citizen, "KTP saya hilang")    # the bridge's getUpdates returns it
    reply = await api.wait_for_sent(lambda sent: sent["chat_id"] == citizen.id)
    api.choose(citizen, reply, "Ya")        # press the button titled "Ya"
    await api.stop()
"""

from bridge.simulator.telegram.server import (FILE_MAX, KEEP_UPDATES, BotApiError, FakeBotApi, RejectedCall,
                                              WebhookPost)
from bridge.simulator.telegram.updates import (TEXT_MAX, SentMessage, StoredFile, TgUser, Unshowable, html_text,
                                               inline_keyboard, markdown_text, system_clock)

__all__ = [
    "FILE_MAX",
    "KEEP_UPDATES",
    "TEXT_MAX",
    "BotApiError",
    "FakeBotApi",
    "RejectedCall",
    "SentMessage",
    "StoredFile",
    "TgUser",
    "Unshowable",
    "WebhookPost",
    "html_text",
    "inline_keyboard",
    "markdown_text",
    "system_clock",
]
