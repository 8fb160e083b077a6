"""The dashboard's pages: plain HTML from the server, a small vanilla script, no CDN.

Vietnamese by default; ``?lang=en`` switches to English (remembered in a cookie). The page
carries its strings and the session's CSRF token; the script calls the same JSON API that API
clients use, with the session cookie and the ``X-CSRF-Token`` header.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

__all__ = ["SECTIONS", "T", "login_page", "page"]

SECTIONS = ("devices", "schedule", "broadcasts", "kpi")

T: dict[str, dict[str, str]] = {
    "vi": {
        "app": "Hệ thống thông tin nguồn cấp tỉnh",
        "nav.devices": "Thiết bị",
        "nav.schedule": "Lịch phát hôm nay",
        "nav.broadcasts": "Bản tin",
        "nav.kpi": "Chỉ tiêu",
        "logout": "Đăng xuất",
        "login": "Đăng nhập",
        "username": "Tên đăng nhập",
        "password": "Mật khẩu",
        "login.failed": "Sai tên đăng nhập hoặc mật khẩu.",
        "login.limited": "Quá nhiều lần thử. Vui lòng thử lại sau {s} giây.",
        "login.csrf": "Phiên đăng nhập đã hết hạn, vui lòng thử lại.",
        "switch": "English",
        "area": "Địa bàn",
        "all": "Tất cả",
        "name": "Tên",
        "kind": "Loại",
        "status": "Trạng thái",
        "status.online": "Hoạt động",
        "status.offline": "Mất kết nối",
        "status.fault": "Lỗi",
        "status.maintenance": "Bảo trì",
        "status.unknown": "Chưa rõ",
        "time": "Giờ phát",
        "title": "Tiêu đề",
        "priority": "Mức ưu tiên",
        "priority.normal": "Thông thường",
        "priority.priority": "Ưu tiên",
        "priority.emergency": "Khẩn cấp",
        "bstatus.drafted": "Bản nháp",
        "bstatus.submitted": "Chờ duyệt",
        "bstatus.approved": "Đã duyệt",
        "bstatus.rejected": "Bị từ chối",
        "bstatus.scheduled": "Đã lên lịch",
        "bstatus.cancelled": "Đã hủy",
        "bstatus.expired": "Hết hiệu lực",
        "category": "Lĩnh vực",
        "channels": "Kênh",
        "channel.audio": "Loa (đọc văn bản)",
        "channel.board": "Bảng tin điện tử",
        "channel.sms": "Tin nhắn SMS",
        "text": "Nội dung",
        "when": "Thời điểm phát",
        "duration": "Thời lượng (giây)",
        "compose": "Soạn bản tin",
        "save_draft": "Lưu nháp",
        "draft_submit": "Soạn và gửi duyệt",
        "submit": "Gửi duyệt",
        "approve": "Phê duyệt",
        "reject": "Từ chối",
        "cancel": "Hủy",
        "reason": "Lý do",
        "author": "Người soạn",
        "dispatch": "Kết quả phát",
        "delivered": "Đã phát {d}/{n}",
        "pending": "Đang phát {d}/{n}",
        "none_today": "Không có lịch phát hôm nay.",
        "no_devices": "Không có thiết bị.",
        "emergency": "PHÁT KHẨN CẤP",
        "emergency.title": "Phát thông báo khẩn cấp",
        "emergency.confirm": "Tôi xác nhận đây là tình huống khẩn cấp; bản tin sẽ cắt ngang "
        "mọi chương trình đang phát sau khi được phê duyệt.",
        "emergency.send": "Xác nhận và gửi duyệt",
        "close": "Đóng",
        "plan": "Kế hoạch",
        "as_of": "Tính đến ngày",
        "show": "Xem báo cáo",
        "no_plans": "Không có kế hoạch nào cho địa bàn của bạn.",
        "saved": "Đã lưu.",
        "error": "Lỗi",
        "live": "Cập nhật trực tiếp",
        "cat.policy_law": "Chủ trương, chính sách, pháp luật",
        "cat.local_government": "Chỉ đạo, điều hành của chính quyền",
        "cat.disaster": "Thiên tai, hỏa hoạn, sự cố",
        "cat.health": "Dịch bệnh, y tế",
        "cat.security": "An ninh, trật tự",
        "cat.knowledge": "Kiến thức khoa học, kinh tế, văn hóa, xã hội",
        "cat.good_examples": "Gương người tốt, việc tốt",
        "cat.feedback_answer": "Trả lời ý kiến người dân",
        "cat.other": "Khác",
    },
    "en": {
        "app": "Provincial source information system",
        "nav.devices": "Devices",
        "nav.schedule": "Today's schedule",
        "nav.broadcasts": "Broadcasts",
        "nav.kpi": "Indicators",
        "logout": "Log out",
        "login": "Log in",
        "username": "Username",
        "password": "Password",
        "login.failed": "Wrong username or password.",
        "login.limited": "Too many attempts. Try again in {s} seconds.",
        "login.csrf": "The login form expired; please try again.",
        "switch": "Tiếng Việt",
        "area": "Area",
        "all": "All",
        "name": "Name",
        "kind": "Kind",
        "status": "Status",
        "status.online": "Online",
        "status.offline": "Offline",
        "status.fault": "Fault",
        "status.maintenance": "Maintenance",
        "status.unknown": "Unknown",
        "time": "Time",
        "title": "Title",
        "priority": "Priority",
        "priority.normal": "Normal",
        "priority.priority": "Priority",
        "priority.emergency": "Emergency",
        "bstatus.drafted": "Draft",
        "bstatus.submitted": "Awaiting approval",
        "bstatus.approved": "Approved",
        "bstatus.rejected": "Rejected",
        "bstatus.scheduled": "Scheduled",
        "bstatus.cancelled": "Cancelled",
        "bstatus.expired": "Expired",
        "category": "Category",
        "channels": "Channels",
        "channel.audio": "Speakers (text to speech)",
        "channel.board": "Electronic boards",
        "channel.sms": "SMS",
        "text": "Text",
        "when": "Air time",
        "duration": "Duration (s)",
        "compose": "Compose a broadcast",
        "save_draft": "Save draft",
        "draft_submit": "Compose and submit",
        "submit": "Submit",
        "approve": "Approve",
        "reject": "Reject",
        "cancel": "Cancel",
        "reason": "Reason",
        "author": "Author",
        "dispatch": "Delivery",
        "delivered": "Delivered {d}/{n}",
        "pending": "Delivering {d}/{n}",
        "none_today": "Nothing scheduled today.",
        "no_devices": "No devices.",
        "emergency": "EMERGENCY BROADCAST",
        "emergency.title": "Emergency broadcast",
        "emergency.confirm": "I confirm this is an emergency; once approved the bulletin cuts "
        "into whatever is playing.",
        "emergency.send": "Confirm and submit",
        "close": "Close",
        "plan": "Plan",
        "as_of": "As of",
        "show": "Show report",
        "no_plans": "No plan covers your areas.",
        "saved": "Saved.",
        "error": "Error",
        "live": "Live",
        "cat.policy_law": "Policy and law",
        "cat.local_government": "Local government",
        "cat.disaster": "Disasters and incidents",
        "cat.health": "Health",
        "cat.security": "Security and order",
        "cat.knowledge": "Knowledge",
        "cat.good_examples": "Good examples",
        "cat.feedback_answer": "Answers to feedback",
        "cat.other": "Other",
    },
}


def _head(lang: str, title: str, extra: str = "") -> str:
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        f'<link rel="stylesheet" href="/static/dashboard.css">{extra}</head>'
    )


def login_page(lang: str, csrf: str, error: str = "", username: str = "") -> str:
    """The login form (its CSRF token is bound to the pre-session cookie)."""
    t = T[lang]
    other = "en" if lang == "vi" else "vi"
    err = f'<p class="error" id="login-error">{escape(error)}</p>' if error else ""
    return (
        _head(lang, f"{t['login']} · {t['app']}")
        + '<body class="login"><main><h1>'
        + escape(t["app"])
        + f"</h1>{err}"
        + '<form method="post" action="/login" id="login-form">'
        + f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        + f'<label>{escape(t["username"])} <input name="username" id="username" '
        + f'autocomplete="username" value="{escape(username)}" required></label>'
        + f'<label>{escape(t["password"])} <input type="password" name="password" '
        + 'id="password" autocomplete="current-password" required></label>'
        + f'<button type="submit" id="login-button">{escape(t["login"])}</button></form>'
        + f'<p><a href="/login?lang={other}">{escape(t["switch"])}</a></p>'
        + "</main></body></html>"
    )


def page(section: str, lang: str, session: dict[str, Any], csrf: str) -> str:
    """The dashboard shell for one section; the script fills it from the API."""
    t = T[lang]
    other = "en" if lang == "vi" else "vi"
    nav = "".join(
        f'<a href="/dashboard{"" if s == "devices" else "/" + s}" '
        f'class="{"on" if s == section else ""}" id="nav-{s}">{escape(t["nav." + s])}</a>'
        for s in SECTIONS
    )
    boot = json.dumps(
        {"lang": lang, "t": t, "session": session, "section": section}, ensure_ascii=False
    ).replace("</", "<\\/")
    return (
        _head(
            lang,
            f"{t['nav.' + section]} · {t['app']}",
            f'<meta name="csrf-token" content="{escape(csrf)}">',
        )
        + f'<body data-section="{section}">'
        + f"<header><h1>{escape(t['app'])}</h1><nav>{nav}</nav>"
        + f'<span class="user" id="user">{escape(session["username"])}</span>'
        + f'<span class="live" id="live" title="{escape(t["live"])}">●</span>'
        + f'<a href="?lang={other}" id="lang-switch">{escape(t["switch"])}</a>'
        + '<form method="post" action="/logout" class="logout">'
        + f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        + f'<button type="submit" id="logout">{escape(t["logout"])}</button></form></header>'
        + '<div id="message" role="status" hidden></div>'
        + f'<main id="main" data-section="{section}"></main>'
        + f'<script type="application/json" id="boot">{boot}</script>'
        + '<script src="/static/dashboard.js"></script></body></html>'
    )
