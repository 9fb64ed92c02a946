"""HypeCards: the render time of one card, and cards per second through the whole engine under a burst.

1. ``render``: the demo's 1080×1350 card (gradient, logo, text with emoji, a contact's photo in a circle, a QR
   code) rendered N times with different names, in this process pinned to one core: wall and CPU time per card,
   the first one (which draws the template's base) apart, and without a photo.
2. ``burst``: the engine on loopback with its roles as separate processes (gateway, inbound, relay, sender,
   cards), CARDS users brought to the photo question, then every photo sent at once. Cards per second from the
   first photo to the last card at the simulator, each card's latency, and meanwhile a probe contact who keeps
   writing "hi": its reply latency against the same probe before the burst (are other conversations stalled?).

    python bench/hypecards.py [--renders 300] [--cards 1000] [--skip-burst]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.common import RESULTS, create_database, drop_database, percentile  # noqa: E402

DEMO = ROOT / "demo" / "content.yaml"
PHOTO = ROOT / "demo" / "pictures" / "wanjiku.jpg"
TEMPLATE = "Jazz Night attendee"


def phone_photo() -> bytes:
    """A photo as WhatsApp delivers one: 1200×1600 JPEG (it scales pictures to about 1600 px)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(PHOTO).resize((1200, 1600)).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def git_commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()


def table(title: str, rows: list[tuple[str, str]]) -> None:
    print(f"\n{title}")
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key.ljust(width)}  {value}")


# ---------------------------------------------------------------- 1. render


def render_bench(renders: int) -> dict[str, Any]:
    from engine.content_import import load_content
    from engine.hypecards.fonts import Fonts
    from engine.hypecards.render import CardInputs, Renderer
    from engine.hypecards.spec import card_values
    from engine.settings import get_settings

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    content = load_content(DEMO)
    spec, assets = next((s, a) for s, a in content.hypecards if s.name == TEMPLATE)
    assert content.logo is not None
    photo = phone_photo()
    renderer = Renderer(Fonts(get_settings().hypecard_emoji_font))
    builtins = {
        "event_name": "Nairobi Jazz Night",
        "event_date": "28 Dec 2026",
        "event_venue": "Carnivore Grounds",
    }

    def one(i: int, with_photo: bool = True) -> tuple[float, float, int]:
        values = card_values(spec, {"name": f"Wanjiku Kamau {i}"}, {**builtins, "code": f"HC-{i:06d}"})
        pictures = {"logo": content.logo[1], **({"photo": photo} if with_photo else {})}  # type: ignore[index]
        wall, cpu = time.perf_counter(), time.thread_time()
        card = renderer.render(spec, CardInputs(values, pictures, assets, "254700000000"))
        return (time.perf_counter() - wall) * 1000, (time.thread_time() - cpu) * 1000, len(card.data)

    first = one(0)
    runs = [one(i) for i in range(1, renders + 1)]
    plain = [one(i, with_photo=False) for i in range(1, renders // 3 + 1)]
    walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
    result: dict[str, Any] = {
        "cards": renders,
        "first_card_ms": round(first[0], 1),
        "wall_ms": {
            "mean": statistics.mean(walls),
            "p50": percentile(walls, 50),
            "p95": percentile(walls, 95),
            "max": max(walls),
        },
        "cpu_ms": {"mean": statistics.mean(cpus), "p50": percentile(cpus, 50), "p95": percentile(cpus, 95)},
        "without_photo_cpu_ms_mean": statistics.mean(r[1] for r in plain),
        "bytes_mean": statistics.mean(r[2] for r in runs),
        "photo": "1200×1600 JPEG",
    }
    table(
        f"render: {renders} cards of {spec.canvas.width}×{spec.canvas.height} ({TEMPLATE}), one core",
        [
            ("first card (draws the base)", f"{result['first_card_ms']:.1f} ms"),
            (
                "wall per card",
                "mean {mean:.1f} · p50 {p50:.1f} · p95 {p95:.1f} · max {max:.1f} ms".format(
                    **result["wall_ms"]
                ),
            ),
            ("CPU per card", "mean {mean:.1f} · p50 {p50:.1f} · p95 {p95:.1f} ms".format(**result["cpu_ms"])),
            ("CPU per card without the photo", f"{result['without_photo_cpu_ms_mean']:.1f} ms"),
            ("JPEG size", f"{result['bytes_mean'] / 1024:.0f} KiB"),
        ],
    )
    return result


# ---------------------------------------------------------------- 2. burst through the engine


async def burst_bench(cards: int) -> dict[str, Any]:
    from engine.content_import import import_content, load_content
    from engine.db import create_pool, database_urls, tenant_tx
    from engine.local_stack import LocalStack
    from engine.migrate import migrate
    from engine.orgs import NewOrganization, create_organization
    from engine.settings import get_settings

    base = get_settings()
    urls = await database_urls(base)
    db = f"bench_cards_{uuid.uuid4().hex[:8]}"
    url = await create_database(urls.owner, db)
    settings = base.model_copy(
        update={"database_url": url, "broker_prefix": f"bcards{uuid.uuid4().hex[:6]}", "log_level": "warning"}
    )
    from engine.logging import configure_logging

    configure_logging(settings)
    await migrate(url, settings.app_db_role, settings.app_db_password)
    stack = LocalStack(settings, concurrency=64)
    await stack.start(in_process_workers=False)
    pool = await create_pool((await database_urls(settings)).app, max_size=4, session_state=False)
    try:
        org_id = await create_organization(
            pool,
            NewOrganization(
                name="Bench FM",
                phone_number_id="bench-cards",
                access_token="t",
                display_phone="254700000000",
                tokens=10_000_000,
            ),
        )
        await import_content(pool, org_id, load_content(DEMO))
        for role in ("inbound", "relay", "sender", "cards"):
            stack.spawn_worker(role)
        wa = stack.whatsapp
        users = [stack.user("bench-cards", f"2547{i:08d}", f"User {i}") for i in range(cards)]
        # Probe contacts: a fresh one every 15 probes (the same menu 20 times in 10 minutes is a bot loop, stopped).
        probes = [stack.user("bench-cards", f"2547999{i:05d}", f"Probe {i}") for i in range(400)]

        async def until(predicate: Any, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while not predicate():
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the engine did not get there in time ({len(wa.recorded)} sent in all)"
                    )
                await asyncio.sleep(0.05)

        gate = asyncio.Semaphore(50)

        async def each(calls: list[Any]) -> None:
            """Post each webhook; a 503 (the broker did not confirm in time) is posted again, as Meta does."""

            async def run(call: Any) -> None:
                async with gate:
                    for attempt in range(20):
                        try:
                            if (await call()).response.status_code == 200:
                                return
                        except httpx.HTTPError:  # the gateway dropped the connection: try again
                            pass
                        await asyncio.sleep(min(0.2 * 2**attempt, 5))
                    raise RuntimeError("webhook refused 20 times")

            await asyncio.gather(*(run(c) for c in calls))

        def count(user: Any) -> int:
            return len(wa.messages(to=user.wa_id))

        started = time.monotonic()
        await each([lambda u=u: u.say("hi") for u in users])
        await until(lambda: all(count(u) >= 1 for u in users), 300)
        item = f"card:{await _template_id(pool, org_id)}"
        await each([lambda u=u: u.tap_button(item, "My Jazz Night card") for u in users])
        await until(lambda: all(count(u) >= 2 for u in users), 300)
        await each([lambda i=i, u=u: u.say(f"Wanjiku Kamau {i}") for i, u in enumerate(users)])
        await until(lambda: all(count(u) >= 3 for u in users), 300)
        prepared = time.monotonic() - started
        print(f"\n{cards} users at the photo question in {prepared:.0f} s", flush=True)

        probed = iter(range(10**6))

        async def probe_latencies(seconds: float, found: list[float] | None = None) -> list[float]:
            found = [] if found is None else found
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                probe = probes[next(probed) // 15]
                before = count(probe)
                sent = time.monotonic()
                await each([lambda probe=probe: probe.say("hi")])
                await until(lambda p=probe, before=before: count(p) > before, 60)  # type: ignore[misc]
                found.append((time.monotonic() - sent) * 1000)
                await asyncio.sleep(0.2)
            return found

        quiet = await probe_latencies(8)
        photo = phone_photo()
        sha = hashlib.sha256(photo).hexdigest()
        media = [wa.add_media(photo, "image/jpeg") for _ in users]
        sent_at: dict[str, float] = {}

        async def send(user: Any, media_id: str) -> Any:
            sent_at.setdefault(user.wa_id, time.time())  # the simulator records arrivals in wall-clock time
            return await user.send_media("image", media_id, "image/jpeg", sha)

        def cards_in() -> list[dict[str, Any]]:
            return [m for m in wa.recorded if m["type"] == "image" and m["to"] in sent_at]

        burst_start = time.monotonic()
        busy: list[float] = []
        probing = asyncio.create_task(probe_latencies(3600, busy))
        await each([lambda u=u, m=m: send(u, m) for u, m in zip(users, media, strict=True)])
        posted = time.monotonic() - burst_start
        await until(lambda: len(cards_in()) >= cards, 1800)
        elapsed = time.monotonic() - burst_start
        probing.cancel()
        await asyncio.gather(probing, return_exceptions=True)
        latencies = [(m["received_at"] - sent_at[m["to"]]) * 1000 for m in cards_in()]
        async with tenant_tx(pool, org_id) as conn:
            statuses = dict(await conn.fetch("SELECT status, count(*) FROM generated_cards GROUP BY status"))
            charged = await conn.fetchval(
                "SELECT count(*) FROM token_transactions WHERE action = 'hypecard_generated'"
            )
        result = {
            "cards": cards,
            "photos_posted_s": round(posted, 1),
            "seconds": round(elapsed, 1),
            "cards_per_second": round(cards / elapsed, 1),
            "card_latency_ms": {
                "p50": percentile(latencies, 50),
                "p95": percentile(latencies, 95),
                "max": max(latencies),
            },
            "probe_quiet_ms": {"p50": percentile(quiet, 50), "p95": percentile(quiet, 95), "n": len(quiet)},
            "probe_burst_ms": {
                "p50": percentile(busy, 50),
                "p95": percentile(busy, 95),
                "max": max(busy, default=0),
                "n": len(busy),
            },
            "statuses": statuses,
            "ledger_rows": charged,
        }
        table(
            f"burst: {cards} photos at once, roles as processes (inbound, relay, sender, cards), 2 cores",
            [
                ("all photos posted after", f"{posted:.1f} s"),
                ("last card at the simulator after", f"{elapsed:.1f} s"),
                ("cards per second", f"{result['cards_per_second']}"),
                (
                    "card latency (photo -> image)",
                    "p50 {p50:.0f} · p95 {p95:.0f} · max {max:.0f} ms".format(**result["card_latency_ms"]),
                ),
                (
                    "probe 'hi' before the burst",
                    "p50 {p50:.0f} · p95 {p95:.0f} ms (n={n})".format(**result["probe_quiet_ms"]),
                ),
                (
                    "probe 'hi' during the burst",
                    "p50 {p50:.0f} · p95 {p95:.0f} · max {max:.0f} ms (n={n})".format(
                        **result["probe_burst_ms"]
                    ),
                ),
                ("cards by status", ", ".join(f"{k} {v}" for k, v in statuses.items())),
                ("ledger rows for cards", str(charged)),
            ],
        )
        return result
    finally:
        await pool.close()
        await stack.stop()
        from engine.broker import Topology, connect

        connection = await connect(settings)
        await Topology.from_settings(settings).delete(await connection.channel())
        await connection.close()
        await drop_database(urls.owner, db)


async def _template_id(pool: Any, org_id: Any) -> str:
    from engine.db import tenant_tx

    async with tenant_tx(pool, org_id) as conn:
        return str(await conn.fetchval("SELECT id FROM hypecard_templates WHERE name = $1", TEMPLATE))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--renders", type=int, default=300)
    parser.add_argument("--cards", type=int, default=1000)
    parser.add_argument("--skip-burst", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "commit": git_commit()}
    results["render"] = render_bench(args.renders)
    if not args.skip_burst:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))  # the burst uses the whole machine
        results["burst"] = asyncio.run(burst_bench(args.cards))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"hypecards-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
