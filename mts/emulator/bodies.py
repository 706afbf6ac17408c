"""Response bodies CoinGecko really sends, copied from recordings and public reports.

Sources: tests/fixtures/coingecko/error_bodies_observed.txt (real recorded bodies). Where a report truncated a
message, the rest is completed in the same style and noted below.
"""

from __future__ import annotations

from typing import Any

from mts.emulator.clock import iso_ms_offset

JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/plain; charset=UTF-8"
HTML_TYPE = "text/html; charset=UTF-8"

PING = {"gecko_says": "(V3) To the Moon!"}
COIN_NOT_FOUND = {"error": "coin not found"}
INVALID_VS_CURRENCY = {"error": "invalid vs_currency"}
INVALID_DAYS = {"error": "Invalid days parameter"}
INTERNAL_ERROR = {"status": 500, "error": "Internal Server Error"}
# Not in the recordings: the text older API versions answered for a wrong path.
INCORRECT_PATH = {
    "error": "Incorrect path. Please check https://www.coingecko.com/api/documentations/v3"
}

RATE_LIMIT = {
    "status": {
        "error_code": 429,
        "error_message": "You've exceeded the Rate Limit. Please visit "
        "https://www.coingecko.com/en/api/pricing to subscribe to our API plans for higher "
        "rate limits.",
    }
}
CLOUDFLARE_1015 = b"error code: 1015"
ACCESS_DENIED_HTML = (
    b"<!DOCTYPE html>\n<html><head><title>Access denied | api.coingecko.com used Cloudflare to "
    b"restrict access</title></head>\n<body><h1>Access denied</h1><p>The owner of this website "
    b"(api.coingecko.com) has banned you temporarily from accessing this website.</p>"
    b"<p>Error code 1015</p></body></html>\n"
)
BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad "
    b"Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)
SERVICE_UNAVAILABLE_HTML = (
    b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    b"<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>cloudflare"
    b"</center>\r\n</body>\r\n</html>\r\n"
)
GATEWAY_TIMEOUT_HTML = (
    b"<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 "
    b"Gateway Time-out</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)

_DOCS_INTRO = "https://docs.coingecko.com/v3.0.1/reference/introduction"


def missing_parameter(name: str) -> dict[str, str]:
    return {"error": f"Missing parameter {name}"}


def history_limit(now_ms: int, history_days: int) -> dict[str, Any]:
    """10012, with its extra "error" wrapper (HTTP 401). Verbatim for 365 days."""
    return {
        "error": {
            "status": {
                "timestamp": iso_ms_offset(now_ms),
                "error_code": 10012,
                "error_message": "Your request exceeds the allowed time range. Public API users "
                f"are limited to querying historical data within the past {history_days} days. "
                "Upgrade to a paid plan to enjoy full historical data access: "
                "https://www.coingecko.com/en/api/pricing. ",
            }
        }
    }


def demo_key_on_pro_host(now_ms: int) -> dict[str, Any]:
    """10011 (HTTP 400), verbatim."""
    return {
        "timestamp": iso_ms_offset(now_ms),
        "error_code": 10011,
        "status": {
            "error_message": "If you are using Demo API key, please change your root URL from "
            "pro-api.coingecko.com to api.coingecko.com Please refer here for more details: "
            + _DOCS_INTRO
        },
    }


def pro_key_on_public_host(now_ms: int) -> dict[str, Any]:
    """10010 (HTTP 400): not recorded; mirrors the 10011 shape and wording."""
    return {
        "timestamp": iso_ms_offset(now_ms),
        "error_code": 10010,
        "status": {
            "error_message": "If you are using Pro API key, please change your root URL from "
            "api.coingecko.com to pro-api.coingecko.com Please refer here for more details: "
            + _DOCS_INTRO
        },
    }


def key_missing(now_ms: int) -> dict[str, Any]:
    """10002 (HTTP 401). The report was cut after "please v"; completed in the same style."""
    return {
        "status": {
            "timestamp": iso_ms_offset(now_ms),
            "error_code": 10002,
            "error_message": "API Key Missing. Please make sure you're using the right "
            "authentication method. For Pro API, please visit: "
            "https://docs.coingecko.com/reference/authentication. For Public/Demo API, please "
            "visit: https://docs.coingecko.com/v3.0.1/reference/authentication",
        }
    }


def key_invalid(now_ms: int) -> dict[str, Any]:
    """10002 (HTTP 401) for a key the emulator does not know. Wording not recorded."""
    return {
        "status": {
            "timestamp": iso_ms_offset(now_ms),
            "error_code": 10002,
            "error_message": "Invalid API Key. Please make sure you're using the right "
            "authentication method. For Pro API, please visit: "
            "https://docs.coingecko.com/reference/authentication. For Public/Demo API, please "
            "visit: https://docs.coingecko.com/v3.0.1/reference/authentication",
        }
    }


def paid_only() -> dict[str, Any]:
    """10005 (HTTP 401). The report elided the URL; completed with the pricing page."""
    return {
        "status": {
            "error_code": 10005,
            "error_message": "This request is limited to PRO API subscribers. Please visit "
            "https://www.coingecko.com/en/api/pricing to subscribe to our API plans.",
        }
    }
