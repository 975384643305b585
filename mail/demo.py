"""A demo mailbox to try the app without one's own mail: a few hundred made-up messages over the
last ~18 months, across everyday topics, with threads, forwards, HTML, attachments and signatures.

The wording is varied from templates with seeded choices, and topics are written with synonyms
(puppy / pup / dog, invoice / bill / receipt, holiday / vacation / trip) so that semantic search
finds what full-text search alone misses. The same seed and ``now`` give the same bytes.

    python -m mail.demo demo.mbox --count 300
"""

from __future__ import annotations

import argparse
import html
import mailbox
import re
import struct
import unicodedata
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from random import Random
from typing import Callable

__all__ = ["write_demo_mbox"]

SPAN_DAYS = 540
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")


@dataclass(frozen=True)
class _Person:
    name: str
    addr: str
    tz_hours: int = -5
    signature: str | None = None
    org: bool = False

    @property
    def first(self) -> str:
        parts = self.name.split()
        return parts[1] if len(parts) > 1 and parts[0] == "Dr." else parts[0]

    @property
    def domain(self) -> str:
        return self.addr.rsplit("@", 1)[1]

    def header(self) -> str:
        return formataddr((self.name, self.addr))


@dataclass
class _Draft:
    """One message of a thread. The first draft of a scenario starts the thread; each later one
    replies to the one before it, unless it is a forward (which starts a new conversation)."""

    sender: _Person
    body: str = ""
    subject: str = ""
    to: tuple[_Person, ...] = ()
    cc: tuple[_Person, ...] = ()
    style: str = "plain"
    """plain | alternative (text + HTML) | html (HTML only)"""
    html: str | None = None
    attachments: tuple[tuple[str, str, bytes], ...] = ()
    delay: timedelta = field(default_factory=lambda: timedelta(hours=4))
    forward: bool = False
    sign: bool = True
    extra_headers: tuple[tuple[str, str], ...] = ()


class _World:
    """The cast and the facts that stay the same across one demo mailbox."""

    def __init__(self, r: Random, owner_name: str, now: datetime) -> None:
        self.r = r
        self.now = now
        parts = owner_name.split()
        last = parts[-1] if len(parts) > 1 else "Rivera"
        ascii_name = unicodedata.normalize("NFKD", owner_name).encode("ascii", "ignore").decode()
        slug = re.sub(r"[^a-z0-9]+", ".", ascii_name.lower()).strip(".") or "owner"
        self.owner = _Person(owner_name, f"{slug}@example.net", -5, None)
        p = _Person
        self.mom = p(f"Linda {last}", f"linda.{last.lower()}@example.net", -5)
        self.sister = p(f"Maya {last}", f"maya.{last.lower()}@example.com", -8)
        self.brother = p(f"Daniel {last}", f"dan.{last.lower()}@example.org", -6)
        self.partner = p("Alex Morgan", "alex.morgan@example.com", -5)
        self.cousin = p("Priya Shah", "priya.shah@example.org", 0)
        self.jordan = p("Jordan Lee", "jordan.lee@example.net", -5)
        self.chloe = p("Chloé Martin", "chloe.martin@example.org", 1)
        self.tomas = p("Tomás Alvarez", "tomas.alvarez@example.com", -5)
        self.nadia = p("Nadia Petrova", "nadia.p@example.net", -5)
        self.vet = p("Greenfield Veterinary Clinic", "appointments@example.org", -5,
                     "Greenfield Veterinary Clinic\n41 Orchard Lane · (555) 010-2288\nappointments@example.org", org=True)
        self.vet_doctor = p("Dr. Helen Park", "helen.park@example.org", -5,
                            "Dr. Helen Park, DVM\nGreenfield Veterinary Clinic")
        self.breeder = p("Rosa Delgado", "rosa.delgado@example.net", -6,
                         "Rosa Delgado\nHillside Farm Retrievers")
        self.manager = p("Karen Whitfield", "karen.whitfield@example.com", -5,
                         "Karen Whitfield\nDirector of Product Engineering")
        self.ben = p("Ben Carter", "ben.carter@example.com", -5, "Ben Carter\nSenior Software Engineer")
        self.olivia = p("Olivia Chen", "olivia.chen@example.com", -8, "Olivia Chen | QA Lead")
        self.marcus = p("Marcus Webb", "marcus.webb@example.com", 0, "Marcus Webb\nProduct Manager")
        self.airline = p("SkyWay Airlines", "bookings@example.com", 0)
        self.hotel = p("Hôtel Lumière Paris", "reservations@example.org", 1,
                       "Hôtel Lumière · 12 rue des Lilas · 75011 Paris", org=True)
        self.villas = p("Casa Azul Villas", "stay@example.net", 1)
        self.energy = p("Northwind Energy", "billing@example.com", -5)
        self.streambox = p("StreamBox", "receipts@example.net", -8)
        self.bank = p("Harbor Bank", "statements@example.org", -5)
        self.accountant = p("Grace Okafor", "grace.okafor@example.org", -5,
                            "Grace Okafor, CPA\nOkafor & Lin Tax Services")
        self.coach = p("Mike Duarte", "coach.mike@example.net", -5, "Coach Mike\nRiverside Rovers FC")
        self.marathon = p("Riverside Marathon", "runners@example.org", -5)
        self.ellie = p("Ellie Brooks", "ellie.brooks@example.com", -5)
        self.builder = p("Victor Novak", "novak.renovations@example.com", -5,
                         "Victor Novak\nNovak Renovations — kitchens, baths, extensions")
        self.movers = p("QuickMove Removals", "moves@example.net", -5, "The QuickMove team", org=True)
        self.trattoria = p("Trattoria Bella", "trattoria.bella@example.org", -5)
        self.teacher = p("Lena Fischer", "lena.fischer@example.net", -5, "Lena\nguitar · theory · songwriting")
        self.bookclub = p("Hannah Wright", "hannah.wright@example.org", -5)
        self.reader = p("The Weekend Reader", "weekend@example.net", 0)
        self.garden = p("Garden Notes", "gardennotes@example.com", 0)
        self.shutter = p("Shutter Club", "shutterclub@example.org", -5)

        self.dog = r.choice(["Biscuit", "Pepper", "Maple", "Juniper", "Waffles"])
        self.breed = r.choice(["beagle", "border collie", "labrador", "corgi"])
        self.cat = r.choice(["Miso", "Luna", "Tofu", "Olive"])
        self.puppy = r.choice(["Scout", "Pickle", "Bean", "Poppy"])
        self.baby = r.choice(["Ava", "Noah", "Iris", "Leo", "Nora"])
        self.niece = r.choice(["Sophie", "Emma", "Lily"])
        self.project = r.choice(["Atlas", "Beacon", "Orchard", "Nimbus", "Lighthouse"])
        self.team = r.choice(["Eastside United", "Northgate Athletic", "Millbrook FC", "Parkview Wanderers"])
        self.beach = r.choice(["the Algarve", "Crete", "Mallorca", "Tulum", "the Amalfi coast"])

    def c(self, options):
        return self.r.choice(options)

    def money(self, low: float, high: float) -> str:
        return f"{self.r.uniform(low, high):,.2f}"

    def day(self) -> str:
        return self.c(_WEEKDAYS)

    def time(self) -> str:
        hour = self.r.randint(8, 18)
        minute = self.c(["00", "15", "30", "45"])
        return f"{(hour - 1) % 12 + 1}:{minute}{'am' if hour < 12 else 'pm'}"

    def hi(self, name: str) -> str:
        return self.c(["Hi {n},", "Hey {n},", "Hello {n},", "{n},", "Hi {n}!", "Morning {n},"]).format(n=name)

    def bye(self, who: _Person) -> str:
        if who.signature:
            return self.c(["Thanks,", "Best regards,", "Kind regards,", "Best,"]) + ("" if who.org else "\n" + who.first)
        return self.c(["Thanks,", "Cheers,", "Talk soon,", "See you,", "x", "Love,", "Best,"]) + "\n" + who.first


# --- scenarios: each returns the drafts of one conversation ----------------------------------------

def _vet_checkup(w: _World) -> list[_Draft]:
    pet, kind = w.c([(w.dog, ["dog", "pup"]), (w.cat, ["cat", "kitty", "cat"]), (w.puppy, ["puppy", "pup", "new puppy"])])
    kind = w.c(kind)
    what = w.c(["annual check-up", "yearly wellness exam", "vaccination appointment", "booster shots",
                "dental cleaning", "weigh-in and nail trim"])
    when = f"{w.day()} at {w.time()}"
    body = (f"Dear {w.owner.first},\n\n"
            f"{w.c(['This is a friendly reminder that', 'Just a reminder:', 'We are writing to remind you that'])} "
            f"your {kind} {pet} is booked in for {w.c(['an', 'the'])} {what} on {when} with "
            f"{w.c(['Dr. Park', 'Dr. Osei', 'our nurse team'])}.\n\n"
            f"{w.c(['Please bring any medication your pet is currently taking.', 'If your pet has been unwell, let us know before the visit.', 'Please arrive ten minutes early so we can update your records.'])} "
            f"{w.c(['For cats, a secure carrier is essential.', 'Dogs should be on a leash in the waiting room.', 'Puppies under 16 weeks should be carried in.'])}\n\n"
            f"To reschedule, simply reply to this email or call us.\n\n{w.bye(w.vet)}")
    drafts = [_Draft(w.vet, body, f"Reminder: {pet}'s {what} on {when.split(' at ')[0]}",
                     style=w.c(["plain", "alternative"]), delay=timedelta(0))]
    if w.r.random() < 0.6:
        new = f"{w.day()} {w.c(['morning', 'afternoon', 'after 5'])}"
        drafts.append(_Draft(w.owner, f"{w.hi('there')}\n\n"
                             f"{w.c(['Could we move', 'Would it be possible to reschedule', 'Any chance we can push'])} "
                             f"{pet}'s appointment? Something came up at work. {new} would work best for me.\n\n"
                             f"{w.c(['Also, ' + pet + ' has been scratching one ear a lot lately, could the vet take a look?', 'Also, is the rabies vaccine due this time too?', 'Also, should I bring a stool sample?'])}\n\n"
                             f"Thanks,\n{w.owner.first}", delay=timedelta(hours=w.r.randint(2, 30))))
        drafts.append(_Draft(w.vet, f"Hi {w.owner.first},\n\nNo problem at all, {pet} is now booked for {new}. "
                             f"{w.c(['We have made a note about the ear.', 'Yes, the rabies booster is due, we will do it on the day.', 'A small fresh sample is helpful, thank you.'])}\n\n"
                             f"See you both then!\n\n{w.bye(w.vet)}", delay=timedelta(hours=w.r.randint(1, 20))))
    return drafts


def _vet_results(w: _World) -> list[_Draft]:
    pet, kind = w.c([(w.cat, "cat"), (w.dog, "dog")])
    finding = w.c([
        ("bloodwork", "Kidney and liver values are all within the normal range."),
        ("urine test", "There is a mild infection, which is easy to treat with a short course of antibiotics."),
        ("x-rays", "There is no fracture, just a soft-tissue sprain; rest and short leash walks for two weeks."),
        ("allergy panel", "It looks like a food sensitivity to chicken, so a hypoallergenic diet is the next step."),
    ])
    body = (f"Hi {w.owner.first},\n\nI have the results of {pet}'s {finding[0]} from {w.day()}. "
            f"{w.c(['Thank you for bringing your ' + kind + ' in.', 'It was good to see you both.', 'Sorry for the wait on these.'])} "
            f"{finding[1]}\n\n{w.c(['Overall, a healthy animal and I am not worried.', 'We should recheck in about six weeks.', 'Call the clinic if anything changes before then.'])}\n\n{w.bye(w.vet_doctor)}")
    drafts = [_Draft(w.vet_doctor, body, f"{pet}'s {finding[0]} results", delay=timedelta(0))]
    if w.r.random() < 0.7:
        drafts.append(_Draft(w.owner, f"{w.c(['Thank you so much,', 'That is a relief, thank you', 'Great news, thanks'])} Dr. Park! "
                             f"{w.c(['We will keep an eye on ' + pet + '.', 'I will book the recheck at the front desk.', 'Is there a particular food brand you recommend?'])}\n\n{w.owner.first}",
                             delay=timedelta(hours=w.r.randint(1, 10))))
    return drafts


def _puppy_arrival(w: _World) -> list[_Draft]:
    weeks = w.r.randint(8, 10)
    png = _png(w.r, 48, 32)
    first = (f"Hi {w.owner.first},\n\n{w.c(['Great news!', 'Good morning!', 'Hello from the farm!'])} "
             f"Your {w.c(['pup', 'puppy', 'little one'])} {w.puppy} is {weeks} weeks old now and "
             f"{w.c(['ready to go to her new home', 'ready to come home with you', 'almost ready to leave the litter'])}. "
             f"{w.c(['She had her first vaccination yesterday', 'She has been microchipped and wormed', 'She is eating four small meals a day'])} "
             f"and {w.c(['is the boldest of the litter', 'loves chewing on shoelaces', 'already comes when called (mostly!)'])}.\n\n"
             f"Pickup would be {w.day()} between {w.time()} and {w.time()}. I'll have her blanket ready so she has "
             f"something that smells like her mum.\n\nA photo from this morning is attached.\n\n{w.bye(w.breeder)}")
    drafts = [_Draft(w.breeder, first, w.c([f"{w.puppy} is ready to come home!", "Pickup day for your puppy",
                                           f"Update on {w.puppy} and the litter"]),
                     attachments=((f"{w.puppy.lower()}-{weeks}wk.png", "image/png", png),), delay=timedelta(0))]
    drafts.append(_Draft(w.owner, f"{w.hi('Rosa')}\n\n{w.c(['She is adorable!', 'Look at that face!', 'We cannot wait!'])} "
                         f"{w.c(['We have the crate set up', 'The baby gates are up', 'We bought a tiny collar'])} and "
                         f"{w.dog} {w.c(['has been sniffing the new bed suspiciously', 'has no idea what is coming', 'will finally have a playmate'])}. "
                         f"{w.c(['What food is she on, so we can keep it the same for the first weeks?', 'Should we bring anything for the car ride?', 'How often does she need to go out at night?'])}\n\n"
                         f"{w.bye(w.owner)}", delay=timedelta(hours=w.r.randint(2, 12))))
    if w.r.random() < 0.7:
        drafts.append(_Draft(w.breeder, f"Hi {w.owner.first},\n\n{w.c(['She is on a puppy kibble, soaked, four meals a day.', 'Bring a towel and a friend to hold her, she may be carsick.', 'Expect to take her out every three or four hours at first.'])} "
                             f"I'll send you home with a small bag of food and her vaccination card.\n\n"
                             f"Remember, new pups sleep a lot — up to 18 hours a day — so don't worry if she naps constantly.\n\n{w.bye(w.breeder)}",
                             delay=timedelta(hours=w.r.randint(3, 24))))
    return drafts


def _pet_chat(w: _World) -> list[_Draft]:
    friend = w.c([w.sister, w.partner, w.jordan])
    topic = w.c([
        (f"Can you walk {w.dog}?", f"Would you be able to take {w.dog} out on {w.day()}? I'm stuck at the office until late. "
         f"The leash is on the hook by the door and the treats are in the blue tin. {w.dog} will try to convince you "
         f"dinner is early. It is not."),
        ("dog sitter for the weekend?", f"We are away {w.day()} to Sunday{w.c(['', ' for a little holiday', ' on a mini vacation'])} — any chance you could dog-sit? {w.dog} is easy: two walks, "
         f"two meals, and all the belly rubs. {w.puppy} is still teething so hide your shoes."),
        (f"{w.cat} vs the houseplant", f"{w.cat} knocked the fern off the windowsill AGAIN. Soil everywhere. The cat looked me in the eye "
         f"while doing it. I am moving every plant to the top shelf."),
        ("puppy training class", f"Found a puppy training class on {w.day()} evenings at the community centre — six weeks, "
         f"basic obedience, sit/stay/recall. Want to sign {w.puppy} up? The trainer uses treats and clickers, no harsh stuff."),
        ("look at this goofball", f"{w.dog} found a stick the size of a small tree at the park and refused to leave without it. "
         f"The whole walk home. Our {w.breed} has no sense of proportion."),
    ])
    drafts = [_Draft(friend, f"{w.hi(w.owner.first)}\n\n{topic[1]}\n\n{w.bye(friend)}", topic[0], delay=timedelta(0),
                     style=w.c(["plain", "plain", "alternative"]))]
    if w.r.random() < 0.7:
        drafts.append(_Draft(w.owner, f"{w.c(['Ha!', 'Of course.', 'Sure thing.', 'Oh no.'])} "
                             f"{w.c(['Count me in.', 'I can do that.', 'That sounds about right for our furry menace.', 'Send pics.'])}"
                             f"\n\n{w.owner.first}", delay=timedelta(hours=w.r.randint(1, 8))))
    return drafts


def _paris_planning(w: _World) -> list[_Draft]:
    friend = w.c([w.partner, w.chloe])
    month = w.c(_MONTHS)
    sights = w.r.sample(["the Louvre", "Montmartre", "a boat on the Seine", "the Musée d'Orsay", "the Marais",
                         "Sainte-Chapelle", "the Eiffel Tower at night", "a picnic in the Luxembourg Gardens",
                         "the Canal Saint-Martin"], 3)
    body = (f"{w.hi(w.owner.first)}\n\n{w.c(['So, Paris!', 'I have been dreaming about our Paris trip.', 'Ok, planning time for Paris.'])} "
            f"I think {month} works for the {w.c(['trip', 'long weekend', 'getaway', 'city break', 'vacation'])}. My list so far:\n\n"
            + "".join(f"- {s}\n" for s in sights) +
            f"\n{w.c(['And croissants every single morning.', 'And at least one proper bistro dinner.', 'And that tiny wine bar Chloé loves.'])} "
            f"{w.c(['Flights look cheaper midweek.', 'The train from London is an option too.', 'Should we stay in the 11th or near the Marais?'])}\n\n{w.bye(friend)}")
    drafts = [_Draft(friend, body, w.c([f"Paris in {month}?", "Paris trip ideas", "Our Paris getaway 🥐"]), delay=timedelta(0))]
    drafts.append(_Draft(w.owner, f"{w.c(['Love it.', 'Yes yes yes.', 'Perfect list.'])} "
                         f"{w.c(['Add the catacombs?', 'I want to see the Orangerie too.', 'Let us keep one day with no plans at all.'])} "
                         f"I'll look at hotels this weekend.\n\n{w.owner.first}", delay=timedelta(hours=w.r.randint(1, 20))))
    if w.r.random() < 0.5:
        drafts.append(_Draft(friend, f"{w.c(['Deal.', 'Great.', 'Sounds good!'])} I'll book the flights once you find a place to stay. "
                             f"{w.c(['Bon voyage to our bank accounts.', 'Can not wait!', 'Practising my French on the app now.'])}\n\n{friend.first}",
                             delay=timedelta(hours=w.r.randint(2, 30))))
    return drafts


def _flight_booking(w: _World) -> list[_Draft]:
    city, code = w.c([("Paris", "CDG"), ("Paris", "ORY"), ("Lisbon", "LIS"), ("Barcelona", "BCN"),
                      ("Heraklion", "HER"), ("Rome", "FCO")])
    ref = "".join(w.r.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6))
    flight = f"SW{w.r.randint(100, 989)}"
    price = w.money(240, 980)
    lines = [f"Booking reference: {ref}", f"Flight {flight}: New York (JFK) to {city} ({code})",
             f"Departs {w.day()} {w.time()}", f"Passengers: {w.owner.name}, {w.partner.name}",
             f"Total paid: ${price}"]
    text = (f"Dear {w.owner.name},\n\nThank you for booking with SkyWay Airlines. Your {w.c(['trip', 'journey', 'flight'])} "
            f"to {city} is confirmed.\n\n" + "\n".join(lines) +
            "\n\nYour e-ticket and receipt are attached as a PDF. Online check-in opens 24 hours before departure.\n\n"
            "SkyWay Airlines — we'll take it from here.")
    drafts = [_Draft(w.airline, text, f"Booking confirmed: {city} ({ref})", style="alternative",
                     html=_receipt_html("SkyWay Airlines", f"Your flight to {city} is confirmed", lines),
                     attachments=((f"eticket-{ref}.pdf", "application/pdf", _pdf(["SkyWay Airlines e-ticket", *lines])),),
                     delay=timedelta(0))]
    if w.r.random() < 0.5:
        drafts.append(_Draft(w.owner, w.c(["Flights are booked!! Details below.", "Done — we are going! Confirmation below for your records.",
                                          f"Booked the flights for {city}, see below."]) + f"\n\n{w.owner.first}",
                             to=(w.partner,), forward=True, delay=timedelta(minutes=w.r.randint(5, 90))))
    return drafts


def _checkin_reminder(w: _World) -> list[_Draft]:
    city = w.c(["Paris", "Lisbon", "Barcelona", "Rome", "Heraklion"])
    rows = [f"Flight SW{w.r.randint(100, 989)} to {city}", f"Departs tomorrow at {w.time()}",
            f"Gate closes 30 minutes before departure", f"Baggage allowance: {w.c(['1 x 23kg', 'cabin bag only', '2 x 23kg'])}"]
    return [_Draft(w.airline, subject=f"Check in now for your flight to {city}", style="html",
                   html=_receipt_html("SkyWay Airlines", "It's time to check in", rows,
                                      "Check in online to choose your seat and get your boarding pass."),
                   delay=timedelta(0))]


def _hotel_booking(w: _World) -> list[_Draft]:
    nights = w.r.randint(2, 6)
    room = w.c(["Superior double room", "Classic room with balcony", "Deluxe room, courtyard view"])
    rate = w.r.randint(140, 260)
    lines = [f"Guest: {w.owner.name}", f"Room: {room}", f"Nights: {nights}", f"Rate: €{rate} per night",
             f"Total: €{rate * nights:,}", "Breakfast included · Free cancellation up to 48 hours before arrival"]
    text = (f"Bonjour {w.owner.first},\n\nWe are delighted to confirm your reservation at Hôtel Lumière in Paris.\n\n"
            + "\n".join(lines) +
            f"\n\nCheck-in is from 3pm. The nearest Métro is Voltaire (line 9). "
            f"{w.c(['We would be happy to book a table or museum tickets for you.', 'Let us know if you are celebrating anything special!', 'Airport transfers can be arranged on request.'])}\n\n"
            f"À bientôt,\n\n-- \n{w.hotel.signature}")
    drafts = [_Draft(w.hotel, text, f"Reservation confirmed – Hôtel Lumière, {nights} nights",
                     style="alternative", html=_receipt_html("Hôtel Lumière", "Your stay in Paris", lines),
                     sign=False, delay=timedelta(0))]
    if w.r.random() < 0.5:
        drafts.append(_Draft(w.owner, f"{w.hi('there')}\n\nThank you! Could we have a quiet room, away from the street? "
                             f"We will arrive around {w.time()}.\n\nMerci,\n{w.owner.name}", delay=timedelta(hours=w.r.randint(3, 48))))
        drafts.append(_Draft(w.hotel, f"Dear {w.owner.first},\n\nOf course — we have noted a quiet room on the courtyard side. "
                             "We look forward to welcoming you.\n\nBien cordialement,\nReception", delay=timedelta(hours=w.r.randint(2, 20))))
    return drafts


def _beach_holiday(w: _World) -> list[_Draft]:
    friend = w.c([w.jordan, w.nadia, w.sister])
    body = (f"{w.hi(w.owner.first)}\n\n{w.c(['Beach week this summer?', 'I need sun.', 'Proposal:'])} "
            f"A {w.c(['holiday', 'vacation', 'week away', 'getaway'])} in {w.beach} — "
            f"{w.c(['a house near the water', 'a small hotel on the beach', 'a villa with a pool'])}, "
            f"{w.c(['snorkelling', 'paddleboarding', 'lazy days with a book'])} and grilled fish every night. "
            f"{w.c(['Prices are decent if we book before March.', 'I found a place that sleeps six.', 'We could split the rental four ways.'])}\n\n"
            f"{w.c(['In?', 'Thoughts?', 'Say yes.'])}\n\n{w.bye(friend)}")
    drafts = [_Draft(friend, body, w.c([f"Beach week in {w.beach}?", "Summer holiday plan ☀️", "Vacation idea"]), delay=timedelta(0))]
    drafts.append(_Draft(w.owner, f"{w.c(['In!', 'So in.', 'Yes please.'])} {w.c(['I have leave to use up anyway.', 'Alex is in too.', 'Sunscreen is packed already.'])} "
                         f"{w.c(['Which dates?', 'Send me the link.', 'How much is the deposit?'])}\n\n{w.owner.first}",
                         delay=timedelta(hours=w.r.randint(1, 30))))
    if w.r.random() < 0.6:
        drafts.append(_Draft(friend, f"{w.c(['Booked!', 'Locked in.', 'Done.'])} {w.c(['Last week of July.', 'First two weeks of August.', 'Mid-June, before the crowds.'])} "
                             f"Deposit is ${w.r.randint(150, 450)} each, I'll send the details.\n\n{friend.first}",
                             delay=timedelta(hours=w.r.randint(4, 72))))
    return drafts


def _villa_rental(w: _World) -> list[_Draft]:
    place = w.c(["Sintra", "Provence", "Tuscany", "Mallorca", w.beach])
    nights = w.r.randint(5, 10)
    total = w.r.randint(1400, 4200)
    lines = [f"Property: {w.c(['Villa Alecrim', 'Casa do Sol', 'Villa Olivo', 'La Bastide Blanche'])}, {place}",
             f"Stay: {nights} nights", f"Guests: {w.r.randint(2, 6)}",
             f"Total: €{total:,} (deposit €{total // 4:,} paid)", "Pool, garden, 3 bedrooms, sea view"]
    text = (f"Dear {w.owner.first},\n\nThank you for choosing Casa Azul Villas! Your {w.c(['holiday home', 'vacation rental', 'villa'])} is confirmed.\n\n"
            + "\n".join(lines) + "\n\nThe balance is due 30 days before arrival. Our local host will meet you with the keys.\n\n"
            "Warm regards,\nCasa Azul Villas")
    return [_Draft(w.villas, text, f"Your villa booking in {place} is confirmed", style=w.c(["alternative", "html"]),
                   html=_receipt_html("Casa Azul Villas", f"Your villa in {place}", lines), delay=timedelta(0))]


def _energy_bill(w: _World) -> list[_Draft]:
    month = w.c(_MONTHS)
    amount = w.money(48, 210)
    lines = [f"Billing period: {month}", f"Electricity used: {w.r.randint(180, 720)} kWh",
             f"Amount due: ${amount}", f"Due date: {w.r.randint(1, 28)} {w.c(_MONTHS)}",
             f"Account: NW-{w.r.randint(100000, 999999)}"]
    text = (f"Hello {w.owner.first},\n\nYour {w.c(['electricity bill', 'energy statement', 'monthly bill'])} for {month} "
            f"is ready.\n\n" + "\n".join(lines) +
            "\n\nIf you pay by direct debit, there is nothing to do. A PDF copy is attached.\n\nNorthwind Energy")
    return [_Draft(w.energy, text, w.c([f"Your {month} bill is ready", f"Northwind Energy statement – {month}",
                                        f"Your electricity bill: ${amount}"]),
                   style=w.c(["alternative", "html", "plain"]),
                   html=_receipt_html("Northwind Energy", f"Your {month} bill", lines),
                   attachments=((f"bill-{month.lower()}.pdf", "application/pdf", _pdf(["Northwind Energy", *lines])),)
                   if w.r.random() < 0.5 else (), delay=timedelta(0))]


def _subscription(w: _World) -> list[_Draft]:
    vendor, what = w.c([(w.streambox, "StreamBox Premium"), (w.streambox, "StreamBox Family plan")])
    amount = w.money(8, 23)
    kind = w.c(["receipt", "renewal", "failed"])
    if kind == "failed":
        lines = [f"Plan: {what}", f"Amount: ${amount}", "Card ending in 4242 was declined"]
        subject = "Action needed: your payment didn't go through"
        intro = "We could not charge your card for this month's subscription. Update your payment details to keep watching."
    else:
        lines = [f"Plan: {what}", f"Amount charged: ${amount}", f"Order ID: SB-{w.r.randint(10**7, 10**8 - 1)}",
                 f"Next renewal: {w.r.randint(1, 28)} {w.c(_MONTHS)}"]
        subject = w.c(["Your StreamBox receipt", "Payment received – thank you", "Your subscription has renewed"])
        intro = "Thanks for being a member. Here is the receipt for your subscription payment."
    text = f"Hi {w.owner.first},\n\n{intro}\n\n" + "\n".join(lines) + "\n\nThe StreamBox team"
    return [_Draft(vendor, text, subject, style=w.c(["alternative", "html"]),
                   html=_receipt_html("StreamBox", subject, lines, intro), delay=timedelta(0))]


def _contractor_invoice(w: _World) -> list[_Draft]:
    number = w.r.randint(1040, 1999)
    items = w.r.sample([("Demolition and removal", 850, 1900), ("Cabinet installation", 2200, 4800),
                        ("Tiling, backsplash", 600, 1500), ("Electrical, new sockets", 400, 1100),
                        ("Plumbing, sink move", 700, 1600), ("Painting, two coats", 500, 1200)], 3)
    rows = [(name, w.r.randint(lo, hi)) for name, lo, hi in items]
    total = sum(v for _, v in rows)
    lines = [f"{name}: ${v:,}" for name, v in rows] + [f"Total due: ${total:,}"]
    body = (f"{w.hi(w.owner.first)}\n\nPlease find attached invoice #{number} for "
            f"{w.c(['the kitchen renovation', 'stage two of the kitchen', 'the bathroom work'])}.\n\n" + "\n".join(lines) +
            f"\n\nPayment within 14 days by bank transfer please. {w.c(['Thanks again for the coffee every morning.', 'It was a pleasure working on your home.', 'The grout needs 48 hours before you clean it.'])}\n\n{w.bye(w.builder)}")
    drafts = [_Draft(w.builder, body, w.c([f"Invoice #{number} – kitchen renovation", f"Invoice {number}", f"Your invoice from Novak Renovations (#{number})"]),
                     attachments=((f"invoice-{number}.pdf", "application/pdf", _pdf([f"Novak Renovations invoice #{number}", *lines])),),
                     delay=timedelta(0))]
    if w.r.random() < 0.6:
        drafts.append(_Draft(w.owner, f"{w.hi('Victor')}\n\n{w.c(['Paid today, thank you!', 'Transfer sent this morning.', 'All paid — could you send a receipt for our records?'])} "
                             f"{w.c(['The kitchen looks amazing.', 'We love the tiles.', 'Everyone who visits asks who did the work.'])}\n\n{w.owner.first}",
                             delay=timedelta(days=w.r.randint(1, 9))))
    return drafts


def _birthday(w: _World) -> list[_Draft]:
    who, host = w.c([("Dad's 65th", w.mom), (f"{w.niece}'s {w.r.randint(5, 9)}th", w.sister), ("Grandma's 90th", w.mom)])
    body = (f"{w.hi(w.owner.first)}\n\n{w.c(['Save the evening!', 'Mark your calendar!', 'Quick one about the party.'])} "
            f"We are doing {who} birthday {w.c(['dinner', 'party', 'lunch', 'get-together'])} on {w.day()} at {w.time()}. "
            f"{w.c(['Can you bring the cake?', 'Could you pick up balloons on the way?', 'Please do not tell anyone, it is a surprise!', 'Gift ideas welcome, I am out of them.'])} "
            f"{w.c(['Everyone is coming.', 'The cousins will be there too.', 'Bring Alex of course.'])}\n\n{w.bye(host)}")
    drafts = [_Draft(host, body, w.c([f"{who} birthday 🎂", f"Plans for {who}", "Birthday party!"]),
                     cc=(w.brother,) if w.r.random() < 0.5 else (), delay=timedelta(0))]
    drafts.append(_Draft(w.owner, f"{w.c(['Wouldn’t miss it.', 'We will be there!', 'Of course.'])} "
                         f"{w.c(['I will bring a chocolate cake.', 'Balloons: on it.', 'My lips are sealed.', 'How about a photo book of the last year?'])}\n\n{w.bye(w.owner)}",
                         delay=timedelta(hours=w.r.randint(1, 24))))
    return drafts


def _wedding(w: _World) -> list[_Draft]:
    venue = w.c(["the old boathouse by the lake", "a vineyard outside town", "Grandpa's farm", "the botanical gardens"])
    kind = w.c(["save", "rsvp", "details"])
    if kind == "save":
        subject, body = "Save the date! 💍", (f"{w.hi(w.owner.first)}\n\nWe are getting married! The wedding will be on "
                                             f"{w.day()}, {w.r.randint(1, 28)} {w.c(_MONTHS)}, at {venue}. A proper invitation will follow, "
                                             f"but please keep the day free. {w.c(['Plus-ones welcome.', 'Kids are welcome.', 'There will be dancing. Lots of dancing.'])}\n\n"
                                             f"Love,\nPriya & Theo")
    elif kind == "rsvp":
        subject, body = "Wedding RSVP + menu choice", (f"{w.hi(w.owner.first)}\n\nCould you let us know by the end of the month if you can "
                                                        f"make it, and choose between {w.c(['salmon or risotto', 'lamb or the vegetable tart', 'chicken or gnocchi'])}? "
                                                        f"We also need any dietary needs for the caterer.\n\nLove,\nPriya")
    else:
        subject, body = "Wedding weekend details", (f"Hi everyone,\n\nA few details for the big day at {venue}: ceremony at {w.time()}, "
                                                     f"reception right after. There is a shuttle from the hotel. Dress code is "
                                                     f"{w.c(['garden party', 'black tie optional', 'summer smart'])}.\n\nWe can't wait to celebrate with you!\nPriya")
    drafts = [_Draft(w.cousin, body, subject, to=(w.owner,) if kind != "details" else (w.mom, w.sister),
                     cc=(w.owner,) if kind == "details" else (), delay=timedelta(0), style=w.c(["plain", "alternative"]))]
    if kind != "details":
        drafts.append(_Draft(w.owner, f"{w.c(['Congratulations!!', 'So happy for you both!', 'Yes! We will be there.'])} "
                             f"{w.c(['Two for the risotto, please.', 'No dietary needs here.', 'Alex is vegetarian, just so you know.'])}\n\n{w.bye(w.owner)}",
                             delay=timedelta(hours=w.r.randint(1, 48))))
    return drafts


def _new_baby(w: _World) -> list[_Draft]:
    weight = f"{w.r.randint(6, 8)} lb {w.r.randint(1, 15)} oz"
    body = (f"{w.c(['Hi everyone,', 'Family,', 'Dear all,'])}\n\n{w.c(['She is here!', 'Our baby has arrived!', 'Meet the newest member of the family!'])} "
            f"{w.baby} was born {w.c(['early this morning', 'last night just after midnight', 'on Tuesday afternoon'])}, {weight}. "
            f"{w.c(['Mother and baby are both doing great.', 'Everyone is tired and very happy.', 'The newborn has a full head of hair!'])} "
            f"{w.c(['Visitors welcome from next week.', 'We will be home by the weekend.', 'Photos attached, more soon.'])}\n\n"
            f"Love,\nDan")
    drafts = [_Draft(w.brother, body, w.c([f"Welcome {w.baby}! 👶", "She's here!", "Baby news"]), to=(w.owner, w.mom),
                     cc=(w.sister,), attachments=(("first-photo.png", "image/png", _png(w.r, 40, 40)),) if w.r.random() < 0.6 else (),
                     delay=timedelta(0))]
    drafts.append(_Draft(w.owner, f"{w.c(['Congratulations!!', 'Oh my goodness, welcome little one!', 'Best news ever.'])} "
                         f"{w.c(['Can not wait to meet the little one.', 'Uncle duty reporting for action.', 'Let us know what you need — meals, errands, anything.'])}\n\n{w.bye(w.owner)}",
                         delay=timedelta(hours=w.r.randint(1, 6))))
    if w.r.random() < 0.5:
        drafts.append(_Draft(w.mom, f"{w.c(['I cried all morning.', 'A grandmother again!', 'She has your nose, Dan.'])} "
                             f"I'm bringing soup on {w.day()}.\n\nLove,\nMom", delay=timedelta(hours=w.r.randint(1, 10))))
    return drafts


def _family_plans(w: _World) -> list[_Draft]:
    occasion = w.c(["Thanksgiving", "Christmas", "Sunday lunch", "the long weekend", "Easter", "the holidays"])
    body = (f"{w.hi('kids')}\n\nWhat is everyone doing for {occasion}? {w.c(['I was thinking we could all come here.', 'Dad wants to do a barbecue.', 'Maybe we rent a cabin by the lake?'])} "
            f"{w.c(['I will do the turkey if someone brings dessert.', 'Tell me who is vegetarian this year.', 'Please reply this time, not just to your sister!'])}\n\nLove,\nMom")
    drafts = [_Draft(w.mom, body, f"{occasion[0].upper()}{occasion[1:]} plans", to=(w.owner, w.sister, w.brother), delay=timedelta(0))]
    drafts.append(_Draft(w.sister, f"{w.c(['Count us in.', 'We are in!', 'Sounds lovely.'])} {w.c(['I will bring pie.', 'We may be late, flights are expensive.', f'{w.niece} wants to bring her hamster.'])}\n\nMaya",
                         to=(w.mom,), cc=(w.owner, w.brother), delay=timedelta(hours=w.r.randint(1, 12))))
    drafts.append(_Draft(w.owner, f"{w.c(['Same here.', 'Yes!', 'We will be there.'])} {w.c(['I will bring the wine.', f'Can {w.dog} come?', 'I will make the stuffing.'])}\n\n{w.owner.first}",
                         to=(w.mom,), cc=(w.sister, w.brother), delay=timedelta(hours=w.r.randint(2, 24))))
    return drafts


def _launch_plan(w: _World) -> list[_Draft]:
    version = w.r.randint(2, 5)
    steps = [f"- Week {i + 1}: {s}" for i, s in enumerate(w.r.sample(
        ["code freeze and release candidate", "beta with ten design partners", "docs and pricing page", "support training",
         "press briefing", "marketing site live", "go/no-go meeting", "general availability"], 4))]
    body = (f"{w.hi('team')}\n\nHere is v{version} of the {w.project} launch plan. Main change: "
            f"{w.c(['we moved GA a week later to fit the security review', 'beta now starts before docs are final', 'pricing is decided, see the attached sheet'])}.\n\n"
            + "\n".join(steps) +
            f"\n\n{w.c(['Comments by Friday please.', 'Shout if your team cannot make these dates.', 'Let us discuss at the sync.'])}\n\n{w.bye(w.marcus)}")
    drafts = [_Draft(w.marcus, body, f"{w.project} launch plan – draft v{version}", to=(w.manager, w.ben), cc=(w.owner,),
                     style=w.c(["plain", "alternative"]), delay=timedelta(0))]
    drafts.append(_Draft(w.manager, f"{w.c(['Looks good.', 'Thanks Marcus.', 'Nice work.'])} {w.c(['One concern: week 3 overlaps the holiday.', 'Can we add a rollback plan?', 'Legal needs to see the press release.'])}\n\n{w.manager.first}",
                         to=(w.marcus,), cc=(w.ben, w.owner), delay=timedelta(hours=w.r.randint(1, 8))))
    if w.r.random() < 0.7:
        drafts.append(_Draft(w.owner, f"{w.c(['Agree with Karen.', 'From the engineering side this works.', 'Plus one.'])} "
                             f"{w.c(['We need two more days for the migration.', 'Monitoring dashboards will be ready by week 2.', 'I will own the rollback plan.'])}\n\n{w.owner.first}",
                             to=(w.marcus,), cc=(w.manager, w.ben), delay=timedelta(hours=w.r.randint(1, 8))))
    return drafts


def _quarterly_review(w: _World) -> list[_Draft]:
    q = w.r.randint(1, 4)
    rows = [("metric", "target", "actual")] + [(m, str(t), str(t + w.r.randint(-15, 20))) for m, t in
                                               [("signups", 1200), ("churn_pct", 4), ("nps", 45), ("p95_latency_ms", 300)]]
    csv = "".join(",".join(r) + "\r\n" for r in rows).encode()
    body = (f"{w.hi('all')}\n\nAgenda for the Q{q} review on {w.day()}:\n\n1. Results against goals (numbers attached)\n"
            f"2. What went well, what didn't\n3. {w.project} roadmap for next quarter\n4. Hiring\n\n"
            f"{w.c(['Please bring one slide each.', 'Keep it short, we have 45 minutes.', 'Pre-read the numbers please.'])}\n\n{w.bye(w.manager)}")
    drafts = [_Draft(w.manager, body, f"Q{q} review – agenda and numbers", to=(w.owner, w.ben, w.marcus, w.olivia),
                     attachments=((f"q{q}-metrics.csv", "text/csv", csv),), delay=timedelta(0))]
    if w.r.random() < 0.6:
        drafts.append(_Draft(w.owner, f"{w.hi('Karen')}\n\n{w.c(['Will do.', 'My slide is ready.', 'Could we move it to the afternoon?'])} "
                             f"{w.c(['Latency numbers look much better this quarter.', 'Signups beat the target, nice.', 'Churn worries me a bit.'])}\n\n{w.owner.first}",
                             to=(w.manager,), delay=timedelta(hours=w.r.randint(1, 20))))
    return drafts


def _bug_report(w: _World) -> list[_Draft]:
    bug = w.c([("Export to CSV drops the last row", "export a report with 101 rows", "100 rows in the file"),
               ("Login loops on Safari", "sign in with SSO in Safari 17", "redirected back to the login page forever"),
               ("Search returns nothing for accented names", "search for 'José'", "no results, though the contact exists"),
               ("Crash when uploading a large image", "upload a 25 MB PNG", "the app freezes, then shows error 500")])
    body = (f"{w.hi('Ben')}\n\nFound a bug in {w.project} {w.c(['staging', 'the release candidate', 'production'])}: {bug[0].lower()}.\n\n"
            f"Steps to reproduce:\n1. {bug[1].capitalize()}\n2. Observe the result\n\nExpected: it works.\nActual: {bug[2]}.\n\n"
            f"Severity: {w.c(['high', 'medium', 'blocker for the launch'])}. Screenshot attached.\n\n{w.bye(w.olivia)}")
    drafts = [_Draft(w.olivia, body, f"Bug: {bug[0]}", to=(w.ben,), cc=(w.owner,),
                     attachments=(("screenshot.png", "image/png", _png(w.r, 64, 40)),), delay=timedelta(0))]
    drafts.append(_Draft(w.ben, f"{w.c(['Good catch.', 'Thanks Olivia.', 'Ugh, reproduced it.'])} {w.c(['Off-by-one in the paginator.', 'The session cookie is missing SameSite.', 'We normalise the query but not the index.', 'The upload limit is checked too late.'])} "
                         f"Fix is in {w.c(['PR #' + str(w.r.randint(200, 999)), 'the next build', 'review now'])}.\n\n{w.bye(w.ben)}",
                         to=(w.olivia,), cc=(w.owner,), delay=timedelta(hours=w.r.randint(1, 10))))
    if w.r.random() < 0.5:
        drafts.append(_Draft(w.olivia, f"Verified on {w.c(['staging', 'the new build'])}, closing. Thanks!\n\n{w.olivia.first}",
                             to=(w.ben,), cc=(w.owner,), delay=timedelta(hours=w.r.randint(2, 30)), sign=False))
    return drafts


def _meeting_notes(w: _World) -> list[_Draft]:
    actions = w.r.sample([f"{w.owner.first}: write the migration runbook", "Ben: fix flaky integration tests",
                          "Olivia: regression pass on the RC", "Marcus: confirm beta customers",
                          "Karen: budget sign-off", "Ben: profile the search endpoint"], 3)
    body = (f"{w.hi('all')}\n\nNotes from {w.day()}'s {w.c(['sync', 'standup', 'planning meeting', 'retro'])}:\n\n"
            f"From our side, {w.c(['the release is on track', 'we are a few days behind', 'the main risk is the data migration'])}.\n"
            f"From the retro: {w.c(['fewer meetings, longer focus blocks', 'better handover between QA and dev', 'celebrate wins more'])}.\n\n"
            "Action items:\n" + "".join(f"- {a}\n" for a in actions) +
            f"\nNext meeting {w.day()} at {w.time()}.\n\n{w.bye(w.ben)}")
    return [_Draft(w.ben, body, w.c(["Meeting notes", f"Notes: {w.project} sync", "Minutes from today"]),
                   to=(w.owner, w.olivia, w.marcus), delay=timedelta(0))]


def _meeting_invite(w: _World) -> list[_Draft]:
    title = w.c(["1:1 planning", f"{w.project} design review", "Roadmap workshop", "Quarterly review prep"])
    day = w.now - timedelta(days=w.r.randint(0, SPAN_DAYS))
    start = f"{day:%Y%m%d}T{w.r.randint(9, 16):02d}0000Z"
    ics = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Demo//Mail//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n"
           f"UID:{w.r.getrandbits(64):016x}@example.com\r\nDTSTAMP:{start}\r\nDTSTART:{start}\r\n"
           f"SUMMARY:{title}\r\nORGANIZER:mailto:{w.manager.addr}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n").encode()
    body = (f"{w.manager.name} has invited you to: {title}\n\nWhen: {w.day()} {w.time()} (45 minutes)\nWhere: Room 4B / video link in the invite\n\n"
            f"{w.c(['Agenda to follow.', 'Please review the doc beforehand.', 'Bring your questions.'])}")
    return [_Draft(w.manager, body, f"Invitation: {title}", style="alternative",
                   attachments=(("invite.ics", "text/calendar", ics),), sign=False, delay=timedelta(0))]


def _football(w: _World) -> list[_Draft]:
    kind = w.c(["moved", "game", "kit"])
    if kind == "moved":
        subject = f"Practice moved to {w.day()}"
        text = (f"The pitch is being reseeded, so {w.c(['soccer', 'football'])} practice moves to {w.day()} at {w.time()} "
                f"on the {w.c(['back field', 'indoor court', 'school pitch'])}. Bring {w.c(['shin pads', 'water', 'both kits'])}.")
    elif kind == "game":
        subject = f"Saturday: Rovers vs {w.team}"
        text = (f"Kick-off {w.time()} against {w.team}. Warm-up 45 minutes before. "
                f"{w.c(['They beat us 3–1 last time, so let us tighten up at the back.', 'Big game — top of the league at stake.', 'Carpool sign-up is on the group chat.'])}")
    else:
        subject = "Kit fees and new shirts"
        text = f"New shirts have arrived. Season fee is ${w.r.randint(60, 140)}, payable by the end of the month."
    body = f"{w.hi('Rovers')}\n\n{text}\n\n{w.bye(w.coach)}"
    drafts = [_Draft(w.coach, body, subject, to=(w.owner, w.jordan), delay=timedelta(0))]
    if w.r.random() < 0.5:
        drafts.append(_Draft(w.owner, f"{w.c(['I will be there.', 'Might be 10 minutes late.', 'Can not make it this week, sorry coach.'])}\n\n{w.owner.first}",
                             to=(w.coach,), delay=timedelta(hours=w.r.randint(1, 20))))
    return drafts


def _marathon(w: _World) -> list[_Draft]:
    if w.r.random() < 0.5:
        week = w.r.randint(3, 16)
        lines = [f"Week {week} of 18", f"Long run: {w.r.randint(10, 20)} miles at easy pace",
                 f"Tempo: {w.r.randint(3, 6)} miles", "Strength: two short sessions", "Rest: Monday and Friday"]
        return [_Draft(w.marathon, subject=f"Your training plan: week {week}", style="html",
                       html=_newsletter_html("Riverside Marathon", f"Week {week}: building endurance",
                                             [("This week", "<br>".join(html.escape(x) for x in lines)),
                                              ("Tip", w.c(["Practise your race-day breakfast on long runs.",
                                                           "New shoes? Break them in now, not in April.",
                                                           "Hydrate early; thirst is a late signal."]))]),
                       extra_headers=(("List-Unsubscribe", "<mailto:runners@example.org?subject=unsubscribe>"),),
                       delay=timedelta(0))]
    friend = w.nadia
    body = (f"{w.hi(w.owner.first)}\n\n{w.c(['Long run on Sunday?', 'Are you up for a long run this weekend?', 'Running club is doing 16 miles on Sunday.'])} "
            f"{w.c(['The river loop is about 14 miles.', 'I want to test my marathon pace.', 'My knee is finally behaving.'])} "
            f"Meet at the bridge at {w.time()}?\n\n{w.bye(friend)}")
    drafts = [_Draft(friend, body, w.c(["Sunday long run", "Marathon training", "Run this weekend?"]), delay=timedelta(0))]
    drafts.append(_Draft(w.owner, f"{w.c(['Yes!', 'In.', 'Sure, slow pace though.'])} {w.c(['Race is only six weeks out.', 'I will bring gels.', 'My bib number arrived today: ' + str(w.r.randint(1000, 9999)) + '.'])}\n\n{w.owner.first}",
                         delay=timedelta(hours=w.r.randint(1, 12))))
    return drafts


def _tennis(w: _World) -> list[_Draft]:
    body = (f"{w.hi(w.owner.first)}\n\n{w.c(['Tennis on', 'Up for a game on', 'Court booked for'])} {w.day()} at {w.time()}? "
            f"{w.c(['Court 3 at the park.', 'The club has the clay courts open again.', 'Doubles with Jordan and Nadia?'])} "
            f"{w.c(['I owe you a rematch after last week.', 'My backhand needs the practice.', 'Loser buys coffee.'])}\n\n{w.bye(w.ellie)}")
    drafts = [_Draft(w.ellie, body, w.c(["Tennis this week?", "Rematch 🎾", "Court booking"]), delay=timedelta(0))]
    if w.r.random() < 0.8:
        drafts.append(_Draft(w.owner, f"{w.c(['You are on.', 'Yes!', 'Can we do an hour later?'])} {w.c(['I will bring new balls.', 'Prepare to lose.', 'Coffee is on me either way.'])}\n\n{w.owner.first}",
                             delay=timedelta(hours=w.r.randint(1, 10))))
    return drafts


def _renovation(w: _World) -> list[_Draft]:
    body = (f"{w.hi(w.owner.first)}\n\nQuick update on the {w.c(['kitchen', 'kitchen remodel', 'renovation'])}: "
            f"{w.c(['the cabinets arrive on ' + w.day(), 'the tiler starts on ' + w.day(), 'the electrician signed off today'])}. "
            f"{w.c(['We found some old wiring behind the wall that needs replacing.', 'The countertop template is done.', 'We are about three days ahead of schedule.'])} "
            f"{w.c(['Can you choose the grout colour by Friday?', 'Please keep the dog out of the kitchen while the floor cures.', 'Water will be off for two hours on Tuesday.'])}\n\n{w.bye(w.builder)}")
    drafts = [_Draft(w.builder, body, w.c(["Kitchen renovation – schedule update", "Renovation update", "Re-tiling and next steps"]),
                     style=w.c(["plain", "alternative"]), delay=timedelta(0))]
    drafts.append(_Draft(w.owner, f"{w.c(['Thanks Victor.', 'Great, thank you.', 'Good to know.'])} {w.c(['Light grey please.', f'{w.dog} will stay with my sister.', 'Go ahead with the wiring.'])}\n\n{w.owner.first}",
                         delay=timedelta(hours=w.r.randint(1, 20))))
    return drafts


def _moving_house(w: _World) -> list[_Draft]:
    if w.r.random() < 0.5:
        quote = w.r.randint(900, 2600)
        body = (f"Dear {w.owner.first},\n\nThank you for asking us to quote for your move. For a "
                f"{w.c(['two-bedroom flat', 'three-bedroom house', 'two-bedroom apartment'])} we estimate ${quote:,}, "
                f"including {w.c(['packing materials', 'a crew of three', 'disassembly of furniture'])}. "
                f"{w.c(['We have availability on the 14th or the 21st.', 'Weekend moves are 10% more.', 'Insurance is included up to $50,000.'])}\n\n{w.bye(w.movers)}")
        return [_Draft(w.movers, body, "Your moving quote", delay=timedelta(0))]
    body = (f"{w.hi(w.owner.first)}\n\n{w.c(['New place checklist, so far:', 'Things to sort before the move:', 'Moving house to-do list:'])}\n"
            "- change address at the bank\n- book the movers\n- boxes (so many boxes)\n- transfer internet\n- register with the new vet\n\n"
            f"{w.c(['What am I missing?', 'I will take the first three.', 'I already miss our old neighbours.'])}\n\n{w.bye(w.partner)}")
    drafts = [_Draft(w.partner, body, w.c(["Moving checklist", "New flat to-do", "Boxes, boxes, boxes"]), delay=timedelta(0))]
    drafts.append(_Draft(w.owner, f"{w.c(['Meter readings!', 'Redirect the post.', 'Tell the cat.'])} And the spare keys.\n\n{w.owner.first}",
                         to=(w.partner,), delay=timedelta(hours=w.r.randint(1, 8))))
    return drafts


def _garden(w: _World) -> list[_Draft]:
    if w.r.random() < 0.5:
        body = (f"{w.hi(w.owner.first)}\n\n{w.c(['My tomato seedlings are out of control.', 'I have too many courgette plants again.', 'The raised beds are finally built.'])} "
                f"Want some for your {w.c(['garden', 'vegetable patch', 'backyard', 'balcony pots'])}? "
                f"{w.c(['Also the pear tree needs pruning, any tips?', 'Slugs ate all my lettuce.', 'Come see the roses, they are ridiculous this year.'])}\n\n{w.bye(w.tomas)}")
        drafts = [_Draft(w.tomas, body, w.c(["Seedlings for you", "Garden swap?", "Vegetable patch news"]), delay=timedelta(0))]
        drafts.append(_Draft(w.owner, f"{w.c(['Yes please!', 'Absolutely.', 'I will take four.'])} {w.c(['I can give you mint in return.', 'Beer traps work for slugs.', 'I will come by on Saturday.'])}\n\n{w.owner.first}",
                             delay=timedelta(hours=w.r.randint(2, 30))))
        return drafts
    tip = w.c([("Sowing in spring", "Start tomatoes and peppers indoors six weeks before the last frost."),
               ("Watering wisely", "Water deeply twice a week rather than a little every day; roots grow deeper."),
               ("Autumn jobs", "Plant garlic and spring bulbs now, and mulch the beds with leaves."),
               ("Pruning roses", "Cut just above an outward-facing bud, at a slant, to keep the centre open.")])
    return [_Draft(w.garden, subject=f"Garden Notes: {tip[0]}", style="html",
                   html=_newsletter_html("Garden Notes", f"No. {w.r.randint(12, 160)} · {tip[0]}", [("This week", tip[1]),
                                                                  ("From readers", w.c(["A hedgehog house made from a wine crate.", "Companion planting: marigolds with beans.", "Rainwater butts from old barrels."]))]),
                   extra_headers=(("List-Unsubscribe", "<mailto:gardennotes@example.com?subject=unsubscribe>"),),
                   delay=timedelta(0))]


def _recipe(w: _World) -> list[_Draft]:
    dish = w.c([("lasagna", ["12 sheets of pasta", "500g beef mince", "a jar of passata", "béchamel", "parmesan"]),
                ("apple pie", ["6 tart apples", "2 cups flour", "butter, very cold", "cinnamon", "brown sugar"]),
                ("shakshuka", ["6 eggs", "2 tins tomatoes", "red peppers", "cumin and paprika", "feta"]),
                ("banana bread", ["3 very ripe bananas", "75g melted butter", "1 egg", "150g flour", "walnuts"])])
    friend = w.c([w.chloe, w.mom, w.jordan])
    body = (f"{w.hi(w.owner.first)}\n\nAs promised, the {dish[0]} recipe:\n\n" + "".join(f"- {i}\n" for i in dish[1]) +
            f"\n{w.c(['Bake at 180°C for about 45 minutes.', 'The secret is to let it rest before cutting.', 'Double the spices, trust me.'])} "
            f"{w.c(['It freezes well too.', 'Serves four hungry people.', 'Let me know how it turns out!'])}\n\n{w.bye(friend)}")
    drafts = [_Draft(friend, body, w.c([f"{dish[0].capitalize()} recipe", f"How to make my {dish[0]}", "The recipe you asked for"]),
                     style=w.c(["plain", "alternative"]), delay=timedelta(0))]
    if w.r.random() < 0.3:
        drafts.append(_Draft(w.owner, w.c(["You have to try this one.", "For our dinner on Saturday?", "Making this tonight!"]) + f"\n\n{w.owner.first}",
                             to=(w.partner,), forward=True, delay=timedelta(hours=w.r.randint(1, 48))))
    return drafts


def _restaurant(w: _World) -> list[_Draft]:
    guests = w.r.randint(2, 6)
    lines = [f"Name: {w.owner.name}", f"Party size: {guests}", f"Date: {w.day()}, {w.r.randint(1, 28)} {w.c(_MONTHS)}",
             f"Time: {w.r.randint(6, 9)}:{w.c(['00', '30'])}pm", "Please let us know 24 hours ahead if your plans change."]
    text = f"Dear {w.owner.first},\n\nThank you for your reservation at Trattoria Bella.\n\n" + "\n".join(lines) + "\n\nBuon appetito!\nTrattoria Bella"
    return [_Draft(w.trattoria, text, w.c([f"Your table for {guests} is confirmed", "Reservation confirmation – Trattoria Bella", "See you soon at Trattoria Bella"]),
                   style="alternative", html=_receipt_html("Trattoria Bella", "Your table is booked", lines), delay=timedelta(0))]


def _pizza_night(w: _World) -> list[_Draft]:
    body = (f"{w.hi(w.owner.first)}\n\n{w.c(['Pizza night at ours on', 'Homemade pizza party', 'Pizza and a movie on'])} {w.day()}? "
            f"{w.c(['I finally got the dough right — 48-hour cold proof.', 'The new pizza oven arrived!', 'Bring your favourite topping.'])} "
            f"{w.c(['Alex is welcome of course.', 'Nadia is coming too.', 'I will get the good mozzarella.'])}\n\n{w.bye(w.jordan)}")
    drafts = [_Draft(w.jordan, body, w.c(["Pizza night 🍕", "Pizza Friday?", "Dough update + invite"]), delay=timedelta(0))]
    drafts.append(_Draft(w.owner, f"{w.c(['Yes!', 'Obviously.', 'We will bring dessert.'])} {w.c(['Pineapple is a valid topping, fight me.', 'I will bring a salad to pretend we are healthy.', 'Can I bring my sourdough starter?'])}\n\n{w.owner.first}",
                         delay=timedelta(hours=w.r.randint(1, 12))))
    return drafts


def _tax_return(w: _World) -> list[_Draft]:
    year = w.r.randint(2023, 2024)
    body = (f"Dear {w.owner.first},\n\nIt is that time again. To prepare your {year} tax return I will need:\n\n"
            "- W-2s from your employer\n- 1099 forms for interest and dividends\n- receipts for charitable donations\n"
            f"- {w.c(['home office expenses', 'childcare costs', 'medical receipts over the threshold'])}\n\n"
            f"{w.c(['Please upload them to the portal by March 15.', 'A scan or photo is fine.', 'Let me know if anything changed this year, such as the move.'])}\n\n{w.bye(w.accountant)}")
    drafts = [_Draft(w.accountant, body, w.c([f"Documents for your {year} tax return", f"{year} taxes – what I need", "Tax season checklist"]),
                  delay=timedelta(0))]
    rows = "date,description,amount\r\n" + "".join(f"{year}-{w.r.randint(1, 12):02d}-{w.r.randint(1, 28):02d},donation,{w.r.randint(20, 300)}\r\n" for _ in range(4))
    drafts.append(_Draft(w.owner, f"{w.hi('Grace')}\n\nHere are the donation receipts as a spreadsheet. The W-2 is on the portal.\n\n{w.owner.first}",
                         attachments=((f"donations-{year}.csv", "text/csv", rows.encode()),),
                         delay=timedelta(days=w.r.randint(1, 10))))
    if w.r.random() < 0.6:
        drafts.append(_Draft(w.accountant, f"Hi {w.owner.first},\n\nYour return is filed. You should receive a refund of "
                             f"${w.money(200, 2400)} within three weeks.\n\n{w.bye(w.accountant)}",
                             delay=timedelta(days=w.r.randint(3, 20))))
    return drafts


def _bank_statement(w: _World) -> list[_Draft]:
    month = w.c(_MONTHS)
    rows = [("date", "description", "amount")] + [(f"{w.r.randint(1, 28):02d} {month[:3]}", d, f"{-w.r.uniform(4, 180):.2f}")
                                                   for d in w.r.sample(["Grocery store", "Northwind Energy", "StreamBox",
                                                                        "Trattoria Bella", "Pet supplies", "Coffee",
                                                                        "Gas station", "Pharmacy"], 5)]
    lines = [f"Statement period: {month}", f"Closing balance: ${w.money(900, 9000)}", "Account ending 7310"]
    attach = ((f"statement-{month.lower()}.csv", "text/csv", "".join(",".join(r) + "\r\n" for r in rows).encode()),) \
        if w.r.random() < 0.4 else ()
    return [_Draft(w.bank, subject=f"Your {month} statement is available", style="html",
                   html=_receipt_html("Harbor Bank", f"Your {month} statement", lines,
                                      "Sign in to online banking to view your full statement. We will never ask for your password by email."),
                   attachments=attach, delay=timedelta(0))]


def _guitar(w: _World) -> list[_Draft]:
    body = (f"{w.hi(w.owner.first)}\n\nGreat lesson {w.c(['today', 'yesterday', 'this week'])}! Practice for next time:\n\n"
            f"- {w.c(['G – C – D – Em changes, slow and clean', 'barre chords: F and Bm, 5 minutes a day', 'the travis picking pattern'])}\n"
            f"- {w.c(['the intro riff we started', 'strumming with a metronome at 80 bpm', 'the first verse of your song'])}\n\n"
            f"{w.c(['Your fingerpicking is getting much smoother.', 'Do not forget to stretch before playing.', 'Next week we start on the solo.'])} "
            f"See you {w.day()} at {w.time()}.\n\n-- \n{w.teacher.signature}")
    drafts = [_Draft(w.teacher, body, w.c(["Practice notes", "Guitar lesson recap", f"Lesson on {w.day()}"]), sign=False, delay=timedelta(0))]
    if w.r.random() < 0.4:
        drafts.append(_Draft(w.owner, f"Thanks Lena! {w.c(['My fingertips hurt.', 'Barre chords are the worst.', 'I played the riff for Alex!'])}\n\n{w.owner.first}",
                             delay=timedelta(hours=w.r.randint(2, 30))))
    return drafts


def _book_club(w: _World) -> list[_Draft]:
    book = w.c([("The Lighthouse Keeper's Daughter", "a quiet novel about a family on a remote island"),
                ("Salt and Static", "a thriller set at a radio station"),
                ("A Year of Small Gardens", "essays about growing things in tiny spaces"),
                ("The Cartographer's Apprentice", "a historical adventure about mapping the coast")])
    body = (f"{w.hi('book lovers')}\n\nNext month's pick is \u201c{book[0]}\u201d, {book[1]}. "
            f"We meet {w.day()} at {w.time()} at {w.c(['my place', 'the café on Elm Street', 'the library'])}. "
            f"From the first chapter I was hooked, so I hope you like it too.\n\n"
            f"{w.c(['Snacks welcome.', 'Bring a friend if you like.', 'Reminder: no spoilers in the group chat!'])}\n\n{w.bye(w.bookclub)}")
    drafts = [_Draft(w.bookclub, body, w.c(["Book club: next month's pick", f"Book club – {book[0]}", "Reading for next month"]),
                     to=(w.owner, w.chloe, w.nadia), delay=timedelta(0))]
    if w.r.random() < 0.5:
        drafts.append(_Draft(w.owner, f"{w.c(['Already bought it.', 'Sounds great.', 'I might be a chapter behind.'])} I'll bring {w.c(['cookies', 'wine', 'cheese'])}.\n\n{w.owner.first}",
                             to=(w.bookclub,), delay=timedelta(hours=w.r.randint(1, 30))))
    return drafts


def _photography(w: _World) -> list[_Draft]:
    if w.r.random() < 0.5:
        theme = w.c(["Golden hour", "Street portraits", "Reflections", "Minimalism", "Night photography"])
        return [_Draft(w.shutter, subject=f"Shutter Club: this month's theme is {theme}", style="html",
                       html=_newsletter_html("Shutter Club", f"Monthly challenge #{w.r.randint(20, 90)}: {theme}",
                                             [("The challenge", f"Submit up to three photos on the theme “{theme}” by the 25th."),
                                              ("Photo walk", f"Meet at the old harbour on {w.day()} at {w.time()}. Bring a tripod."),
                                              ("Tip", w.c(["Shoot in RAW to keep highlights.", "Use a slow shutter for light trails.", "Get low for a new angle."]))]),
                       delay=timedelta(0))]
    body = (f"{w.hi(w.owner.first)}\n\n{w.c(['Here is my favourite shot from the photo walk.', 'Got one I am really proud of.', 'Look at this light!'])} "
            f"{w.c(['50mm, f/1.8, 1/250s.', 'Taken on my old film camera, scanned.', 'Phone photo, no editing.'])} "
            f"{w.c(['Should I enter it in the club competition?', 'Critique welcome.', 'Printing it for the wall.'])}\n\n{w.bye(w.nadia)}")
    return [_Draft(w.nadia, body, w.c(["Photo from Saturday", "My favourite shot", "Photography walk pics"]),
                   attachments=(("DSC_0" + str(w.r.randint(1000, 9999)) + ".png", "image/png", _png(w.r, 60, 40)),),
                   delay=timedelta(0))]


def _newsletter(w: _World) -> list[_Draft]:
    issue = w.r.randint(40, 240)
    stories = w.r.sample([("Why we walk", "A short essay on evening walks, with or without a dog."),
                          ("The cheapest city breaks", "Five cities where a weekend costs less than a concert ticket."),
                          ("Sourdough, simply", "Flour, water, salt, patience."),
                          ("Slow travel", "Trains over planes: the case for taking the long way round."),
                          ("Small kitchens", "How to cook big meals in tiny rooms."),
                          ("Reading in public", "Notes on the pleasure of a paperback on the bus."),
                          ("The ten-minute garden", "Herbs on a windowsill count as a garden.")], 3)
    return [_Draft(w.reader, subject=f"The Weekend Reader #{issue}: {stories[0][0]}", style="html",
                   html=_newsletter_html("The Weekend Reader", f"Issue #{issue}", stories),
                   extra_headers=(("List-Unsubscribe", "<mailto:weekend@example.net?subject=unsubscribe>"),),
                   delay=timedelta(0))]


_SCENARIOS: list[tuple[Callable[[_World], list[_Draft]], int]] = [
    (_vet_checkup, 4), (_vet_results, 2), (_puppy_arrival, 2), (_pet_chat, 4),
    (_paris_planning, 3), (_flight_booking, 3), (_checkin_reminder, 2), (_hotel_booking, 2), (_beach_holiday, 2),
    (_villa_rental, 2),
    (_energy_bill, 3), (_subscription, 3), (_contractor_invoice, 2), (_bank_statement, 3), (_tax_return, 1),
    (_birthday, 2), (_wedding, 2), (_new_baby, 1), (_family_plans, 2),
    (_launch_plan, 2), (_quarterly_review, 2), (_bug_report, 3), (_meeting_notes, 3), (_meeting_invite, 2),
    (_football, 4), (_marathon, 3), (_tennis, 3),
    (_renovation, 2), (_moving_house, 2), (_garden, 3),
    (_recipe, 2), (_restaurant, 2), (_pizza_night, 2),
    (_guitar, 2), (_book_club, 2), (_photography, 2),
    (_newsletter, 4),
]


# --- writing -----------------------------------------------------------------------------------------

def write_demo_mbox(path: Path, *, count: int = 300, seed: int = 7, owner_name: str = "Sam Rivera",
                    now: datetime | None = None) -> int:
    """Write ``count`` made-up messages to a new mbox at ``path`` (replacing it) and return how many
    were written. Dates fall in the ~18 months before ``now`` (default: the current time)."""
    if count < 0:
        raise ValueError("count must be 0 or more")
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    r = Random(seed)
    world = _World(r, owner_name, now)
    scenarios = [s for s, weight in _SCENARIOS for _ in range(weight)]

    messages: list[tuple[datetime, str, EmailMessage]] = []
    seen: set[str] = set()
    seq = retries = 0
    while len(messages) < count:
        drafts = r.choice(scenarios)(world)
        key = drafts[0].body or drafts[0].html or ""
        if key in seen and retries < 100:  # the same words twice would look generated
            retries += 1
            continue
        seen.add(key)
        retries = 0
        for when, msg in _render_thread(drafts, world, now, seq):
            if len(messages) < count:
                messages.append((when, msg["From"].addresses[0].addr_spec, msg))
        seq += len(drafts)
    messages.sort(key=lambda m: m[0])

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    box = mailbox.mbox(path, create=True)
    try:
        box.lock()
        for when, sender, msg in messages:
            entry = mailbox.mboxMessage(msg)
            entry.set_from(sender, when.astimezone(timezone.utc).timetuple())
            box.add(entry)
        box.flush()
    finally:
        box.unlock()
        box.close()
    return len(messages)


def _render_thread(drafts: list[_Draft], w: _World, now: datetime, seq: int) -> list[tuple[datetime, EmailMessage]]:
    total = sum((d.delay for d in drafts[1:]), timedelta())
    zone = timezone(timedelta(hours=drafts[0].sender.tz_hours))
    day = (now - timedelta(days=w.r.randint(0, SPAN_DAYS))).astimezone(zone)
    # people write in the daytime: the thread starts between 7:00 and 22:00 where its first sender is
    when = day.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(seconds=w.r.randint(7 * 3600, 22 * 3600))
    while when + total > now:
        when -= timedelta(days=1)
    out: list[tuple[datetime, EmailMessage]] = []
    root = drafts[0]
    prev: tuple[_Draft, EmailMessage, str] | None = None
    refs: list[str] = []
    for i, d in enumerate(drafts):
        if i:
            when += d.delay
        local = when.astimezone(timezone(timedelta(hours=d.sender.tz_hours)))
        text = d.body
        if d.sign and d.sender.signature and text:
            text = text.rstrip() + "\n\n-- \n" + d.sender.signature
        msg = EmailMessage()
        msg["From"] = d.sender.header()
        msg_id = f"<{w.r.getrandbits(40):010x}.{seq + i}@{d.sender.domain}>"
        if prev is None:
            to, cc, subject = d.to or (w.owner,), d.cc, d.subject
            refs = []
        elif d.forward:
            _, p_msg, p_text = prev
            to, cc, subject = d.to, d.cc, "Fwd: " + _bare_subject(p_msg["Subject"])
            text = (f"{text}\n\n---------- Forwarded message ---------\nFrom: {p_msg['From']}\nDate: {p_msg['Date']}\n"
                    f"Subject: {p_msg['Subject']}\nTo: {p_msg['To']}\n\n{p_text}")
            refs = []
        else:
            p_draft, p_msg, p_text = prev
            to = d.to or ((w.owner,) if d.sender != w.owner else (p_draft.sender,))
            cc = d.cc or tuple(x for x in root.cc if x != d.sender and x not in to)
            subject = "Re: " + _bare_subject(p_msg["Subject"])
            msg["In-Reply-To"] = p_msg["Message-ID"]
            msg["References"] = " ".join(refs[-8:])
            text = f"{text}\n\n{_attribution(w, p_msg, p_draft.sender)}\n" + _quote(p_text)
        refs.append(msg_id)
        msg["To"] = ", ".join(p.header() for p in to)
        if cc:
            msg["Cc"] = ", ".join(p.header() for p in cc)
        msg["Subject"] = subject
        msg["Date"] = format_datetime(local)
        msg["Message-ID"] = msg_id
        for name, value in d.extra_headers:
            msg[name] = value
        if d.style == "html" or not text:
            msg.set_content(d.html or _text_html(text), subtype="html")
        else:
            msg.set_content(text)
            if d.style == "alternative":
                msg.add_alternative(d.html or _text_html(text), subtype="html")
        for filename, ctype, data in d.attachments:
            main, sub = ctype.split("/")
            if main == "text":
                msg.add_attachment(data.decode(), subtype=sub, filename=filename)
            else:
                msg.add_attachment(data, maintype=main, subtype=sub, filename=filename)
        for part in msg.walk():
            if part.is_multipart():  # the generator would pick a random boundary
                part.set_boundary(f"=_{w.r.getrandbits(64):016x}")
        out.append((when, msg))
        prev = (d, msg, text or _html_text(d.html or ""))
    return out


def _bare_subject(subject: str) -> str:
    return re.sub(r"^((re|fwd?):\s*)+", "", str(subject), flags=re.IGNORECASE)


def _attribution(w: _World, msg: EmailMessage, sender: _Person) -> str:
    when = msg["Date"].datetime
    hour12 = f"{(when.hour - 1) % 12 + 1}:{when.minute:02d} {'AM' if when.hour < 12 else 'PM'}"
    return w.c([
        f"On {_WEEKDAYS[when.weekday()][:3]}, {when.day} {_MONTHS[when.month - 1][:3]} {when.year} at {when.hour:02d}:{when.minute:02d}, {sender.name} <{sender.addr}> wrote:",
        f"On {_WEEKDAYS[when.weekday()]}, {_MONTHS[when.month - 1]} {when.day}, {when.year} at {hour12}, {sender.name} wrote:",
        f"On {when.year}-{when.month:02d}-{when.day:02d} {when.hour:02d}:{when.minute:02d}, {sender.name} wrote:",
    ])


def _quote(text: str) -> str:
    return "".join(("> " + line if line and not line.startswith(">") else ">" + line) + "\n"
                   for line in text.rstrip().split("\n"))


def _text_html(text: str) -> str:
    """Plain text as simple HTML: paragraphs, quoted lines in a blockquote, the signature muted."""
    body, _, signature = text.partition("\n-- \n")
    blocks = []
    for para in re.split(r"\n\s*\n", body.strip()):
        lines = para.split("\n")
        if all(line.startswith(">") for line in lines):
            inner = "<br>".join(html.escape(line.lstrip("> ")) for line in lines)
            blocks.append(f'<blockquote style="margin:0 0 0 .8ex;border-left:2px solid #ccc;padding-left:1ex">{inner}</blockquote>')
        else:
            blocks.append("<p>" + "<br>".join(html.escape(line) for line in lines) + "</p>")
    if signature:
        blocks.append('<div style="color:#777">-- <br>' + "<br>".join(html.escape(x) for x in signature.split("\n")) + "</div>")
    return '<html><body style="font-family:Helvetica,Arial,sans-serif;font-size:14px">' + "\n".join(blocks) + "</body></html>\n"


def _html_text(markup: str) -> str:
    text = re.sub(r"<(br|/p|/tr|/h\d|/div)[^>]*>", "\n", markup)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    return "\n".join(line.strip() for line in text.split("\n") if line.strip())


def _receipt_html(brand: str, heading: str, lines: list[str], intro: str = "") -> str:
    rows = "".join(f'<tr><td style="padding:6px 12px;border-bottom:1px solid #eee">{html.escape(x)}</td></tr>' for x in lines)
    lead = f"<p>{html.escape(intro)}</p>" if intro else ""
    return (f'<html><body style="margin:0;background:#f4f4f7;font-family:Arial,sans-serif">'
            f'<table width="100%" cellpadding="0" cellspacing="0"><tr><td align="center">'
            f'<table width="560" style="background:#fff;margin:24px 0;border-radius:6px">'
            f'<tr><td style="background:#1d3557;color:#fff;padding:16px 24px;font-size:20px"><b>{html.escape(brand)}</b></td></tr>'
            f'<tr><td style="padding:24px"><h2 style="margin-top:0">{html.escape(heading)}</h2>{lead}'
            f'<table width="100%">{rows}</table></td></tr>'
            f'<tr><td style="padding:12px 24px;color:#999;font-size:11px">You are receiving this email because of your account with '
            f'{html.escape(brand)}.</td></tr></table></td></tr></table></body></html>\n')


def _newsletter_html(brand: str, heading: str, stories: list[tuple[str, str]]) -> str:
    body = "".join(f'<h3 style="color:#2a6f4e">{html.escape(title)}</h3><p>{text if "<br>" in text else html.escape(text)}</p>'
                   for title, text in stories)
    return (f'<html><head><style>body{{font-family:Georgia,serif;color:#222}}</style></head><body>'
            f'<div style="max-width:600px;margin:auto"><h1>{html.escape(brand)}</h1><h2>{html.escape(heading)}</h2>{body}'
            f'<hr><p style="font-size:11px;color:#888">You subscribed to {html.escape(brand)}. '
            f'<a href="https://example.org/unsubscribe">Unsubscribe</a></p></div></body></html>\n')


def _pdf(lines: list[str]) -> bytes:
    """A one-page PDF with the lines in Helvetica; valid enough for any reader."""
    def esc(s: str) -> str:
        s = s.encode("latin-1", "replace").decode("latin-1")
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = "BT /F1 12 Tf 72 760 Td 16 TL " + " ".join(f"({esc(x)}) '" for x in lines) + " ET"
    objects = ["<< /Type /Catalog /Pages 2 0 R >>",
               "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               "/Resources << /Font << /F1 5 0 R >> >> >>",
               f"<< /Length {len(stream.encode('latin-1'))} >>\nstream\n{stream}\nendstream",
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n{obj}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _png(r: Random, width: int, height: int) -> bytes:
    """A small RGB PNG: a soft two-colour gradient with a little noise, like a tiny photo."""
    a = [r.randint(20, 235) for _ in range(3)]
    b = [r.randint(20, 235) for _ in range(3)]
    raw = bytearray()
    for y in range(height):
        raw.append(0)
        for x in range(width):
            t = (x + y) / (width + height)
            raw += bytes(max(0, min(255, int(a[k] + (b[k] - a[k]) * t) + r.randint(-6, 6))) for k in range(3))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mail.demo", description="Write a demo mailbox (mbox) of made-up mail.")
    parser.add_argument("out", type=Path, help="the mbox file to write (replaced if it exists)")
    parser.add_argument("--count", type=int, default=300, help="how many messages (default 300)")
    parser.add_argument("--seed", type=int, default=7, help="random seed; the same seed gives the same mailbox")
    parser.add_argument("--owner", default="Sam Rivera", help="the mailbox owner's name")
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error("--count must be 0 or more")
    written = write_demo_mbox(args.out, count=args.count, seed=args.seed, owner_name=args.owner)
    print(f"wrote {written} messages to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
