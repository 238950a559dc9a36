"""Word tables the built-in tasks draw from, written for this project."""

WORDS = """
apple river garden window bottle candle forest pencil mirror ladder button castle dragon engine
falcon guitar hammer island jacket kitten lemon magnet needle orange parrot rabbit saddle tiger
umbrella violin wagon yellow zebra anchor basket carpet desert eagle feather glove harbor insect
jungle kettle lantern meadow napkin ocean pepper quilt rocket silver tunnel valley walnut blanket
cactus donkey elbow fossil giraffe helmet iceberg journal koala lizard marble nickel onion planet
rainbow spider tomato unicorn velvet whistle yogurt bridge cloud daisy energy flower grape honey
igloo jelly kayak lobster monkey nest olive pirate queen robot shadow turtle uncle vase wizard
acorn biscuit comet dolphin emerald finger goblin hollow ink jaguar kiwi lagoon mango noodle oyster
puzzle radish sponge thunder urchin vulture waffle bamboo cherry dentist echo fabric gravel hazel
ivory jasmine kernel lotus muffin nectar otter pebble raven salmon tulip utensil voyage walrus
""".split()

# (singular, plural) pairs, regular and irregular.
PLURALS = [
    ("cat", "cats"), ("dog", "dogs"), ("house", "houses"), ("tree", "trees"), ("car", "cars"),
    ("book", "books"), ("chair", "chairs"), ("table", "tables"), ("bird", "birds"), ("apple", "apples"),
    ("river", "rivers"), ("flower", "flowers"), ("garden", "gardens"), ("window", "windows"),
    ("pencil", "pencils"), ("friend", "friends"), ("teacher", "teachers"), ("road", "roads"),
    ("cup", "cups"), ("shoe", "shoes"), ("box", "boxes"), ("bus", "buses"), ("dish", "dishes"),
    ("church", "churches"), ("fox", "foxes"), ("glass", "glasses"), ("watch", "watches"),
    ("brush", "brushes"), ("kiss", "kisses"), ("tax", "taxes"), ("city", "cities"), ("baby", "babies"),
    ("party", "parties"), ("story", "stories"), ("lady", "ladies"), ("country", "countries"),
    ("berry", "berries"), ("puppy", "puppies"), ("day", "days"), ("boy", "boys"), ("key", "keys"),
    ("toy", "toys"), ("leaf", "leaves"), ("knife", "knives"), ("wife", "wives"), ("wolf", "wolves"),
    ("shelf", "shelves"), ("half", "halves"), ("man", "men"), ("woman", "women"), ("child", "children"),
    ("tooth", "teeth"), ("foot", "feet"), ("mouse", "mice"), ("goose", "geese"), ("person", "people"),
    ("ox", "oxen"), ("sheep", "sheep"), ("fish", "fish"), ("deer", "deer"), ("potato", "potatoes"),
    ("tomato", "tomatoes"), ("hero", "heroes"), ("piano", "pianos"), ("photo", "photos"),
    ("cactus", "cacti"), ("crisis", "crises"), ("phenomenon", "phenomena"), ("bag", "bags"),
    ("lamp", "lamps"), ("door", "doors"), ("hat", "hats"), ("ship", "ships"), ("star", "stars"),
    ("coin", "coins"), ("ring", "rings"), ("song", "songs"), ("boat", "boats"), ("horse", "horses"),
    ("cloud", "clouds"), ("hand", "hands"), ("egg", "eggs"), ("bell", "bells"), ("desk", "desks"),
    ("girl", "girls"), ("king", "kings"), ("queen", "queens"), ("bottle", "bottles"), ("candle", "candles"),
    ("spoon", "spoons"), ("plate", "plates"), ("wall", "walls"), ("street", "streets"), ("lion", "lions"),
    ("monkey", "monkeys"), ("valley", "valleys"), ("penny", "pennies"), ("fly", "flies"),
    ("match", "matches"), ("bench", "benches"), ("wish", "wishes"), ("loaf", "loaves"),
    ("calf", "calves"), ("thief", "thieves"), ("louse", "lice"), ("cherry", "cherries"),
    ("farmer", "farmers"), ("island", "islands"), ("mountain", "mountains"),
]

# (word, antonym) pairs.
ANTONYMS = [
    ("hot", "cold"), ("big", "small"), ("happy", "sad"), ("fast", "slow"), ("up", "down"),
    ("light", "dark"), ("old", "young"), ("rich", "poor"), ("strong", "weak"), ("early", "late"),
    ("open", "closed"), ("full", "empty"), ("hard", "soft"), ("high", "low"), ("long", "short"),
    ("wet", "dry"), ("clean", "dirty"), ("loud", "quiet"), ("thick", "thin"), ("heavy", "light"),
    ("good", "bad"), ("true", "false"), ("win", "lose"), ("give", "take"), ("push", "pull"),
    ("begin", "end"), ("buy", "sell"), ("love", "hate"), ("day", "night"), ("inside", "outside"),
    ("above", "below"), ("before", "after"), ("left", "right"), ("first", "last"), ("near", "far"),
    ("cheap", "expensive"), ("easy", "difficult"), ("safe", "dangerous"), ("sweet", "sour"),
    ("wide", "narrow"), ("deep", "shallow"), ("brave", "cowardly"), ("polite", "rude"),
    ("friend", "enemy"), ("question", "answer"), ("remember", "forget"), ("accept", "refuse"),
    ("arrive", "leave"), ("always", "never"), ("absent", "present"), ("ancient", "modern"),
    ("asleep", "awake"), ("beautiful", "ugly"), ("bitter", "sweet"), ("boring", "exciting"),
    ("calm", "angry"), ("careful", "careless"), ("clever", "stupid"), ("cruel", "kind"),
    ("noisy", "silent"), ("entrance", "exit"), ("export", "import"), ("fat", "thin"),
    ("fail", "succeed"), ("gentle", "rough"), ("guilty", "innocent"), ("healthy", "sick"),
    ("increase", "decrease"), ("maximum", "minimum"), ("north", "south"), ("east", "west"),
    ("major", "minor"), ("male", "female"), ("natural", "artificial"), ("private", "public"),
    ("positive", "negative"), ("plus", "minus"), ("raise", "lower"), ("single", "married"),
    ("tall", "short"), ("tight", "loose"), ("top", "bottom"), ("victory", "defeat"), ("wild", "tame"),
    ("wise", "foolish"), ("alive", "dead"), ("add", "subtract"), ("agree", "disagree"),
    ("attack", "defend"), ("borrow", "lend"), ("common", "rare"), ("dangerous", "safe"),
    ("external", "internal"), ("freeze", "melt"), ("future", "past"), ("hire", "fire"),
    ("include", "exclude"), ("junior", "senior"), ("laugh", "cry"), ("lazy", "busy"),
]

# Animals with a rough body mass in kilograms, for "which is larger".
ANIMAL_MASS_KG = {
    "ant": 0.000003, "bee": 0.0001, "fly": 0.00002, "spider": 0.001, "mouse": 0.02, "sparrow": 0.03,
    "frog": 0.1, "hamster": 0.15, "squirrel": 0.5, "rat": 0.3, "pigeon": 0.35, "rabbit": 2.0,
    "cat": 4.0, "chicken": 3.0, "duck": 1.5, "fox": 6.0, "owl": 1.5, "eagle": 5.0, "beaver": 20.0,
    "dog": 25.0, "goat": 50.0, "sheep": 70.0, "wolf": 40.0, "kangaroo": 60.0, "pig": 150.0,
    "deer": 100.0, "lion": 190.0, "tiger": 220.0, "bear": 300.0, "gorilla": 160.0, "zebra": 380.0,
    "cow": 700.0, "horse": 500.0, "camel": 600.0, "moose": 500.0, "bison": 900.0, "giraffe": 1200.0,
    "rhinoceros": 2300.0, "hippopotamus": 1500.0, "elephant": 6000.0, "whale": 40000.0,
}
