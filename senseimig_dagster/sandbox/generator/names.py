"""Name, address, phone and e-mail material, and the real-world ways people write them."""

from __future__ import annotations

import random
import unicodedata

# fmt: off
# city, state, time zone, area codes, ZIP prefix, nearby towns
METROS = (
    ("Denver", "CO", "America/Denver", ("303", "720"), "802", ("Aurora", "Lakewood", "Englewood", "Arvada")),
    ("Colorado Springs", "CO", "America/Denver", ("719",), "809", ("Fountain", "Monument", "Security")),
    ("Phoenix", "AZ", "America/Phoenix", ("602", "480", "623"), "850", ("Tempe", "Mesa", "Glendale")),
    ("Austin", "TX", "America/Chicago", ("512", "737"), "787", ("Round Rock", "Pflugerville", "Cedar Park")),
    ("Seattle", "WA", "America/Los_Angeles", ("206", "425"), "981", ("Bellevue", "Renton", "Shoreline")),
    ("Portland", "OR", "America/Los_Angeles", ("503", "971"), "972", ("Beaverton", "Gresham", "Tigard")),
    ("Atlanta", "GA", "America/New_York", ("404", "678", "770"), "303", ("Decatur", "Marietta", "Smyrna")),
    ("Boise", "ID", "America/Boise", ("208",), "837", ("Meridian", "Nampa", "Eagle")),
    ("Salt Lake City", "UT", "America/Denver", ("801", "385"), "841", ("Sandy", "Murray", "West Jordan")),
    ("Anchorage", "AK", "America/Anchorage", ("907",), "995", ("Eagle River", "Girdwood")),
    ("Honolulu", "HI", "Pacific/Honolulu", ("808",), "968", ("Kailua", "Pearl City", "Aiea")),
    ("Nashville", "TN", "America/Chicago", ("615",), "372", ("Franklin", "Brentwood", "Hendersonville")),
)
# fmt: on

# first name -> nicknames (empty when none is common)
# fmt: off
MALE: dict[str, tuple[str, ...]] = {
    "James": ("Jim", "Jimmy"), "Robert": ("Bob", "Rob"), "John": ("Jack", "Johnny"), "Michael": ("Mike",),
    "David": ("Dave",), "William": ("Bill", "Will"), "Richard": ("Rick", "Dick"), "Joseph": ("Joe",),
    "Thomas": ("Tom",), "Christopher": ("Chris",), "Charles": ("Charlie", "Chuck"),
    "Daniel": ("Dan", "Danny"), "Matthew": ("Matt",), "Anthony": ("Tony",), "Mark": (), "Donald": ("Don",),
    "Steven": ("Steve",), "Andrew": ("Andy", "Drew"), "Paul": (), "Joshua": ("Josh",), "Kenneth": ("Ken",),
    "Kevin": (), "Brian": (), "George": (), "Timothy": ("Tim",), "Ronald": ("Ron",),
    "Edward": ("Ed", "Eddie"), "Jason": (), "Jeffrey": ("Jeff",), "Ryan": (), "Jacob": ("Jake",), "Gary": (),
    "Nicholas": ("Nick",), "Eric": (), "Jonathan": ("Jon",), "Stephen": ("Steve",), "Larry": (), "Justin": (),
    "Scott": (), "Benjamin": ("Ben",), "Samuel": ("Sam",), "Gregory": ("Greg",), "Alexander": ("Alex",),
    "Patrick": ("Pat",), "Raymond": ("Ray",), "Jack": (), "Dennis": (), "Jerry": (), "Tyler": (), "Aaron": (),
    "Jose": (), "Adam": (), "Nathan": ("Nate",), "Henry": ("Hank",), "Zachary": ("Zach",), "Peter": ("Pete",),
    "Kyle": (), "Noah": (), "Ethan": (), "Liam": (), "Lucas": ("Luke",), "Mason": (), "Carlos": (),
    "Luis": (), "Wei": (), "Minh": (), "Omar": (), "Theodore": ("Ted", "Theo"), "Vincent": ("Vince",),
}
FEMALE: dict[str, tuple[str, ...]] = {
    "Mary": (), "Patricia": ("Pat", "Trish"), "Jennifer": ("Jen", "Jenny"), "Linda": (),
    "Elizabeth": ("Liz", "Beth", "Betsy"), "Barbara": ("Barb",), "Susan": ("Sue",), "Jessica": ("Jess",),
    "Sarah": (), "Karen": (), "Lisa": (), "Nancy": (), "Betty": (), "Margaret": ("Maggie", "Peggy"),
    "Sandra": ("Sandy",), "Ashley": (), "Kimberly": ("Kim",), "Emily": ("Em",), "Donna": (), "Michelle": (),
    "Carol": (), "Amanda": ("Mandy",), "Dorothy": ("Dot",), "Melissa": ("Missy",),
    "Deborah": ("Debbie", "Deb"), "Stephanie": ("Steph",), "Rebecca": ("Becky",), "Sharon": (), "Laura": (),
    "Cynthia": ("Cindy",), "Kathleen": ("Kathy",), "Amy": (), "Angela": ("Angie",), "Shirley": (), "Anna": (),
    "Brenda": (), "Pamela": ("Pam",), "Emma": (), "Nicole": ("Nikki",), "Helen": (), "Samantha": ("Sam",),
    "Katherine": ("Kate", "Katie"), "Christine": ("Chris",), "Debra": ("Deb",), "Rachel": (),
    "Catherine": ("Cathy",), "Carolyn": (), "Janet": (), "Ruth": (), "Maria": (), "Heather": (), "Diane": (),
    "Virginia": ("Ginny",), "Julie": (), "Joyce": (), "Victoria": ("Vicky", "Tori"), "Olivia": ("Liv",),
    "Kelly": (), "Christina": ("Tina",), "Lauren": (), "Joan": (), "Evelyn": ("Evie",), "Judith": ("Judy",),
    "Megan": ("Meg",), "Andrea": (), "Cheryl": (), "Hannah": (), "Jacqueline": ("Jackie",), "Martha": (),
    "Gloria": (), "Teresa": ("Terry",), "Ava": (), "Sophia": ("Sophie",), "Isabella": ("Bella",),
    "Abigail": ("Abby",), "Madison": ("Maddie",), "Mei": (), "Priya": (), "Fatima": (), "Lucia": (),
}
LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green",
    "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Gomez",
    "Phillips", "Evans", "Turner", "Diaz", "Parker", "Cruz", "Edwards", "Collins", "Reyes", "Stewart",
    "Morris", "Morales", "Murphy", "Cook", "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper", "Peterson",
    "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson", "Watson", "Brooks",
    "Chavez", "Wood", "James", "Bennett", "Gray", "Mendoza", "Ruiz", "Hughes", "Price", "Alvarez", "Castillo",
    "Sanders", "Patel", "Myers", "Long", "Ross", "Foster", "Jimenez", "Powell", "Jenkins", "Perry", "Russell",
    "Sullivan", "Bell", "Coleman", "Butler", "Henderson", "Barnes", "Gonzales", "Fisher", "Vasquez",
    "Simmons", "Romero", "Jordan", "Patterson", "Alexander", "Hamilton", "Graham", "Reynolds", "Griffin",
    "Wallace", "Moreno", "West", "Cole", "Hayes", "Bryant", "Herrera", "Gibson", "Ellis", "Tran", "Medina",
    "Aguilar", "Stevens", "Murray", "Ford", "Castro", "Marshall", "Owens", "Harrison", "Fernandez",
    "McDonald", "Woods", "Washington", "Kennedy", "Wells", "Vargas", "Henry", "Chen", "Freeman", "Webb",
    "Tucker", "Guzman", "Burns", "Crawford", "Olson", "Simpson", "Porter", "Hunter", "Gordon", "Mendez",
    "Silva", "Shaw", "Snyder", "Mason", "Dixon", "Munoz", "Hunt", "Hicks", "Holmes", "Palmer", "Wagner",
    "Black", "Robertson", "Boyd", "O'Brien", "O'Connor", "McKenzie", "Van Dyke", "St. John", "De La Cruz",
    "Okafor", "Yamamoto", "Kowalski",
)
NON_ASCII_FIRST = (
    "Zoë", "José", "Renée", "Chloé", "Björn", "Søren", "François", "Inés", "Noël", "Jürgen", "Łukasz",
    "Siobhán", "Dóra", "Héctor", "Raúl", "Nicolás", "Anaïs", "Åsa", "Mónica", "Zoé", "Thảo", "Jiří", "Ágnes",
    "Begoña",
)
NON_ASCII_LAST = (
    "Nguyễn", "Ó Briain", "Müller-Lüdenscheid", "García-Peña", "Muñoz", "Núñez", "Dvořák", "Çelik", "Gößling",
    "Øster", "Šimić", "Ibáñez", "Lefèvre", "Jäger", "Ng-Trần", "Kovács", "Đặng", "Mäkelä", "Sørensen",
    "Ó Súilleabháin", "Córdoba", "Zielińska",
)
_LONG_PARTS = (
    "Wolfeschlegelsteinhausenbergerdorff", "Featherstonehaugh-Cholmondeley", "Vandersteen-Montgomery",
    "Worthington-Smythe", "Abercrombie-Fitzwilliam", "Throckmorton-Ravenscroft",
)
ETHNICITIES = (
    "Not Hispanic or Latino", "Hispanic or Latino", "Declined to specify", "Asian",
    "Black or African American", "White", "American Indian or Alaska Native",
)
STREETS = (
    "Maple", "Oak", "Pine", "Cedar", "Elm", "Washington", "Lake", "Hill", "Park", "Main", "Sunset",
    "Highland", "Ridge", "Meadow", "Forest", "River", "Spring", "Willow", "Aspen", "Juniper", "Canyon",
    "Mesa", "Lincoln", "Jefferson", "Franklin", "Colfax", "Broadway", "Alameda", "Evans", "Mountain View",
)
SUFFIXES = (
    ("Street", "St"), ("Avenue", "Ave"), ("Drive", "Dr"), ("Lane", "Ln"), ("Court", "Ct"),
    ("Boulevard", "Blvd"), ("Road", "Rd"), ("Way", "Way"), ("Place", "Pl"), ("Circle", "Cir"),
)
EMAIL_DOMAINS = (
    "gmail.com", "gmail.com", "gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "aol.com",
    "comcast.net", "msn.com", "live.com", "protonmail.com",
)
# fmt: on


def first_name(rng: random.Random, gender: str) -> str:
    pool = MALE if gender == "Male" else FEMALE if gender == "Female" else rng.choice((MALE, FEMALE))
    return rng.choice(tuple(pool))


def nickname_of(first: str) -> str | None:
    options = MALE.get(first) or FEMALE.get(first)
    return options[0] if options else None


def long_last_name(rng: random.Random) -> str:
    """A hyphenated family name of more than 100 characters (ASCII, so it is only a length problem)."""
    parts = list(_LONG_PARTS)
    rng.shuffle(parts)
    name = parts[0]
    for part in parts[1:]:
        name += "-" + part
        if len(name) > 100:
            return name
    return name + "-" + parts[0]


def ascii_fold(text: str) -> str:
    """What mail systems and legacy exports turn accented names into."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded if ch.isalnum()).lower()


def email_for(rng: random.Random, first: str, last: str) -> str:
    f, l_ = ascii_fold(first) or "pt", ascii_fold(last) or "patient"
    local = rng.choice(
        (
            f"{f}.{l_}",
            f"{f}{l_}",
            f"{f[0]}{l_}",
            f"{f}.{l_}{rng.randint(1, 99)}",
            f"{f}{rng.randint(60, 2010)}",
            f"{l_}.{f}",
            f"{f}_{l_}",
        )
    )
    return f"{local}@{rng.choice(EMAIL_DOMAINS)}"


def bad_email(rng: random.Random, first: str, last: str) -> tuple[str, str]:
    """A syntactically invalid e-mail, and what is wrong with it."""
    f, l_ = ascii_fold(first) or "pt", ascii_fold(last) or "patient"
    domain = rng.choice(EMAIL_DOMAINS)
    return rng.choice(
        (
            (f"{f}.{l_}@{domain.split('.')[0]}", "no top-level domain"),
            (f"{f}.{l_}@@{domain}", "double @"),
            (f"{f} {l_}@{domain}", "space"),
            (f"{f}.{l_}.{domain}", "no @"),
            ("n/a", "placeholder"),
            (f"{f}.{l_}@{domain},{l_}@{domain}", "two addresses"),
        )
    )


# -- phones: digits are generated once, the format is how the front desk typed it ----------------------------
# fmt: off
PHONE_FORMATS = (
    ("+1{a}{e}{n}", 45), ("({a}) {e}-{n}", 20), ("{a}-{e}-{n}", 15), ("{a}.{e}.{n}", 5), ("{a}{e}{n}", 8),
    ("1-{a}-{e}-{n}", 4), ("+1 {a} {e} {n}", 3),
)
# fmt: on


def phone_digits(rng: random.Random, area_codes: tuple[str, ...]) -> str:
    return rng.choice(area_codes) + str(rng.randint(201, 998)) + str(rng.randrange(10000)).zfill(4)


def format_phone(digits: str, template: str) -> str:
    return template.format(a=digits[:3], e=digits[3:6], n=digits[6:])


def bad_phone(rng: random.Random, digits: str) -> tuple[str, str]:
    """A phone that cannot be dialled as written, and what is wrong with it."""
    return rng.choice(
        (
            (f"{digits[3:6]}-{digits[6:]}", "no area code"),
            (f"{digits[:3]}-{digits[3:6]}-{digits[6:9]}", "nine digits"),
            ("000-000-0000", "placeholder"),
            ("N/A", "placeholder"),
            (f"{digits}{rng.randint(0, 9)}", "eleven digits"),
            ("call mom", "text"),
        )
    )


def typo(rng: random.Random, text: str) -> str:
    """One keying error: swapped, dropped or doubled letter."""
    if len(text) < 3:
        return text + text[-1:]
    i = rng.randrange(1, len(text) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if kind == 1:
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i] + text[i:]
