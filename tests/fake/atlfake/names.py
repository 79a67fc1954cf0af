"""Word pools for the generated tenant.

The pools deliberately mix ASCII, Latin-1, other scripts, apostrophes,
double quotes and spaces, because a connector that round-trips these
through JSON, C strings, SQL and URLs is where real tenants break.
Everything is picked with a seeded random.Random, so the same seed always
yields the same names.
"""

FIRST_NAMES = [
    "Mia", "Liam", "Olivia", "Noah", "Emma", "Ava", "Lucas", "Amelia",
    "José", "Zoë", "Søren", "Ægir", "Chloé", "François", "Björn", "Łukasz",
    "Ömer", "Nguyễn", "Siobhán", "Dvořák", "Renée", "Jürgen", "Ana María",
    "Mary Ann", "Jean-Luc", "D'Arcy", "Khaled", "Priya", "Wei", "Yuki",
    "Aiko", "Sven", "Ingrid", "Oluwaseun", "Thandiwe", "Mateo", "Valentina",
    "Ivan", "Алексей", "Мария", "Γιώργος", "Ελένη", "李", "王", "さくら",
    "민준", "Fatima", "Ahmed", "Zainab", "Kofi", "Ngozi", "Ravi", "Ananya",
]

LAST_NAMES = [
    "Krystof", "Smith", "Jones", "O'Brien", "O'Neil", "van der Berg",
    "de la Cruz", "García", "Müller", "Schröder", "Østergaard", "Kowalski",
    "Nakamura", "Tanaka", "Kim", "Park", "Nguyen", "Ivanov", "Петров",
    "Παπαδόπουλος", "伟", "芳", "たなか", "Okafor", "Mensah", "Patel",
    "Sharma", "Singh", "Haddad", "Rossi", "Bianchi", "Dubois", "Lefèvre",
    "Žukauskas", "Nowak", "Horváth", "Novák", "Jensen", "Lindqvist",
    "MacDonald", "Fitzgerald", "St. John", "Smith-Jones", "da Silva",
]

# A few hand-written display names exercise quoting, spaces and astral
# characters; the generator forces some of them into even the tiny profile.
SPECIAL_DISPLAY_NAMES = [
    'Robert "Bobby" Tables',
    "Renée O'Connor-Smith",
    "  Leading and trailing spaces  ",
    "Zoë 🚀 Rocket",
    "Back\\slash Person",
    "李 小龙",
    "Comma, Person",
    "Semi;colon & Ampersand <tag>",
]

APP_NAMES = [
    "Automation for Jira", "Slack", "Jira Service Management Widget",
    "Atlassian Assist", "Opsgenie Integration", "GitHub for Jira",
    "Tempo Timesheets", "Zephyr Scale", "Microsoft Teams for Jira",
    "ScriptRunner", "Jira Cloud for Google Sheets", "Statuspage",
    "draw.io Diagrams", "Gliffy", "BigPicture", "Xray Test Management",
]

GROUP_WORDS = [
    "Platform", "Payments", "Mobile", "Web", "Data", "Security", "Infra",
    "Support", "Sales", "Marketing", "Finance", "Legal", "People", "QA",
    "Release", "Design", "Research", "Growth", "Billing", "Identity",
]

GROUP_PATTERNS = [
    "team-{w}-{n}",
    "Team {w} {n}",
    "R&D / {w} {n}",
    "{w}/on-call {n}",
    "Équipe {w} – Île-de-France {n}",
    "{w} Ünïcödé Grüppe {n}",
    "开发团队 {w} {n}",
    "{w} & Friends {n}",
    "contractors.{w}.{n}",
    "{w} (EMEA) {n}",
]

PROJECT_ADJECTIVES = [
    "Phoenix", "Atlas", "Nimbus", "Orion", "Quartz", "Zephyr", "Helios",
    "Aurora", "Cobalt", "Falcon", "Juniper", "Kestrel", "Lumen", "Meridian",
    "Nova", "Polaris", "Sierra", "Tundra", "Vega", "Willow",
]

PROJECT_NOUNS = [
    "Platform", "Portal", "Migration", "Redesign", "Service Desk", "Billing",
    "Mobile App", "Data Lake", "Onboarding", "Compliance", "Reporting",
    "Gateway", "Helpdesk", "Roadmap", "Search", "Checkout",
]

TIME_ZONES = [
    "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney",
    "UTC", "America/Los_Angeles", "Europe/Berlin", "Asia/Kolkata",
    "Africa/Lagos", "America/Sao_Paulo",
]

LOCALES = ["en_US", "fr_FR", "de_DE", "ja_JP", "en_GB", "pt_BR"]

JOB_TITLES = [
    "Engineer", "Senior Engineer", "Product Manager", "Designer",
    "Support Agent", "Team Lead", "Director", "Analyst",
]

DEPARTMENTS = ["Engineering", "Support", "Sales", "Finance", "People", "Legal"]
