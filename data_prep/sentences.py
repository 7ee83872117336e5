"""Hand-written everyday sentences for the synthetic corpus, one bank per released language, and a held-out bank.

``SENTENCES`` is what training corpora are spoken from; ``HELD_OUT`` holds other sentences of the same kind that no
corpus ever uses, for test sets (``data_prep.synthetic.generate_testset``): a model is judged on text it never saw.

``text`` is what goes into the manifest, in the language's ordinary script. ``spoken`` is what
espeak-ng is given when that differs: Mandarin is spoken from tone-numbered pinyin (espeak reads
hanzi badly), and Japanese (kana only, espeak reads kanji as "Chinese letter") writes the topic and
direction particles は/へ as they sound, わ/え, because espeak reads kana letter by letter.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sentence:
    text: str
    spoken: str | None = None

    @property
    def speech(self) -> str:
        return self.spoken if self.spoken is not None else self.text


def _plain(*texts: str) -> tuple[Sentence, ...]:
    return tuple(Sentence(t) for t in texts)


SENTENCES: dict[str, tuple[Sentence, ...]] = {
    "en": _plain(
        "The quick brown fox jumps over the lazy dog.",
        "Please call Stella and ask her to bring these things from the store.",
        "Where did you put the keys to the blue car?",
        "It rained all morning, but the afternoon was warm and bright.",
        "My grandmother grows tomatoes and beans in her small garden.",
        "Could you speak a little more slowly, please?",
        "The train to the coast leaves just after seven.",
        "We watched the stars from the roof until midnight.",
        "Reading a good book is the best way to spend a quiet evening.",
        "How much does this jacket cost?",
        "The children laughed when the puppy chased its own tail.",
        "Turn left at the bakery and walk two blocks north.",
    ),
    "de": _plain(
        "Der Zug nach Berlin fährt pünktlich um acht Uhr ab.",
        "Heute scheint die Sonne, und die Vögel singen im Garten.",
        "Kannst du mir bitte das Salz geben?",
        "Meine Schwester arbeitet in einer kleinen Buchhandlung.",
        "Wir gehen am Wochenende in den Bergen wandern.",
        "Wo ist der nächste Bahnhof?",
        "Das Essen war lecker, aber etwas zu scharf.",
        "Im Winter trinken wir gern heißen Tee mit Honig.",
        "Der Hund schläft den ganzen Nachmittag auf dem Sofa.",
        "Ich habe meinen Regenschirm im Büro vergessen.",
        "Wie spät ist es jetzt?",
        "Die Kinder bauen einen Schneemann vor dem Haus.",
    ),
    "fr": _plain(
        "Il fait très beau aujourd'hui, allons nous promener.",
        "Pouvez-vous me dire où se trouve la gare?",
        "Ma sœur prépare une tarte aux pommes pour le dîner.",
        "Le chat dort sur le rebord de la fenêtre.",
        "Nous avons visité un petit musée près du port.",
        "Quelle heure est-il, s'il vous plaît?",
        "Les enfants jouent dans le jardin depuis ce matin.",
        "J'ai oublié mon parapluie chez mes parents.",
        "Le marché ouvre tôt le samedi.",
        "Cette chanson me rappelle les vacances d'été.",
        "Tu veux boire un café ou un thé?",
        "La bibliothèque est fermée le lundi.",
    ),
    "es": _plain(
        "Hoy hace un día precioso para pasear por el parque.",
        "¿Dónde está la estación de tren?",
        "Mi hermano cocina una paella deliciosa los domingos.",
        "El perro duerme tranquilo junto a la puerta.",
        "Necesito comprar pan y leche antes de volver a casa.",
        "¿Cuánto cuesta este libro?",
        "Los niños cantan canciones en la escuela.",
        "Por la noche siempre leemos un poco antes de dormir.",
        "La playa estaba llena de gente y de sombrillas.",
        "Olvidé las llaves en la oficina.",
        "¿Quieres venir al cine con nosotros?",
        "El tren sale a las ocho de la mañana.",
    ),
    "it": _plain(
        "Oggi il cielo è sereno e fa caldo.",
        "Scusi, dov'è la fermata dell'autobus?",
        "Mia nonna prepara la pasta fresca ogni domenica.",
        "Il gatto dorme sul divano tutto il pomeriggio.",
        "Abbiamo camminato lungo il fiume fino al tramonto.",
        "Quanto costa questo biglietto?",
        "I bambini giocano a calcio nel cortile.",
        "Ho dimenticato l'ombrello in ufficio.",
        "La biblioteca apre alle nove.",
        "Vuoi un caffè o un bicchiere d'acqua?",
        "D'estate andiamo sempre al mare.",
        "Questa canzone mi ricorda la mia infanzia.",
    ),
    "pt": _plain(
        "Hoje o dia está lindo e quente.",
        "Onde fica a farmácia mais próxima?",
        "A minha irmã faz um bolo de laranja aos domingos.",
        "O gato dorme ao sol na varanda.",
        "Precisamos de comprar pão e leite.",
        "Quanto custa este livro?",
        "As crianças brincam no jardim depois da escola.",
        "Esqueci o guarda-chuva no escritório.",
        "À noite gostamos de ouvir música.",
        "Vamos ao cinema no sábado?",
        "O mar estava calmo e azul.",
        "A biblioteca fecha cedo às sextas-feiras.",
    ),
    "ru": _plain(
        "Сегодня очень хорошая погода.",
        "Скажите, пожалуйста, где находится вокзал?",
        "Моя сестра печёт яблочный пирог по воскресеньям.",
        "Кошка спит на подоконнике весь день.",
        "Мы гуляли в парке до самого вечера.",
        "Сколько стоит эта книга?",
        "Дети играют во дворе после школы.",
        "Я забыл зонтик на работе.",
        "Зимой мы любим пить горячий чай с мёдом.",
        "Ты хочешь пойти с нами в кино?",
        "Поезд отправляется рано утром.",
        "Библиотека закрыта по понедельникам.",
    ),
    "ko": _plain(
        "오늘은 날씨가 정말 좋아요.",
        "기차역이 어디에 있어요?",
        "우리 언니는 주말마다 빵을 구워요.",
        "고양이가 창가에서 자고 있어요.",
        "저녁에 공원에서 산책을 했어요.",
        "이 책은 얼마예요?",
        "아이들이 학교 운동장에서 놀아요.",
        "우산을 사무실에 두고 왔어요.",
        "겨울에는 따뜻한 차를 자주 마셔요.",
        "같이 영화 보러 갈래요?",
        "버스가 곧 도착합니다.",
        "도서관은 월요일에 문을 닫아요.",
    ),
    "zh": (
        Sentence("今天天气很好。", "jin1 tian1 tian1 qi4 hen3 hao3."),
        Sentence("请问火车站在哪里？", "qing3 wen4 huo3 che1 zhan4 zai4 na3 li3?"),
        Sentence("我姐姐每个周末都做蛋糕。", "wo3 jie3 jie5 mei3 ge4 zhou1 mo4 dou1 zuo4 dan4 gao1."),
        Sentence("小猫在窗台上睡觉。", "xiao3 mao1 zai4 chuang1 tai2 shang4 shui4 jiao4."),
        Sentence("晚上我们在公园散步。", "wan3 shang5 wo3 men5 zai4 gong1 yuan2 san4 bu4."),
        Sentence("这本书多少钱？", "zhe4 ben3 shu1 duo1 shao3 qian2?"),
        Sentence("孩子们在操场上玩。", "hai2 zi5 men5 zai4 cao1 chang3 shang4 wan2."),
        Sentence("我把雨伞忘在办公室了。", "wo3 ba3 yu3 san3 wang4 zai4 ban4 gong1 shi4 le5."),
        Sentence("冬天我常常喝热茶。", "dong1 tian1 wo3 chang2 chang2 he1 re4 cha2."),
        Sentence("你想和我们一起去看电影吗？", "ni3 xiang3 he2 wo3 men5 yi4 qi3 qu4 kan4 dian4 ying3 ma5?"),
        Sentence("公共汽车马上就到了。", "gong1 gong4 qi4 che1 ma3 shang4 jiu4 dao4 le5."),
        Sentence("图书馆星期一不开门。", "tu2 shu1 guan3 xing1 qi1 yi1 bu4 kai1 men2."),
        Sentence("我喜欢早上喝一杯咖啡。", "wo3 xi3 huan5 zao3 shang5 he1 yi4 bei1 ka1 fei1."),
    ),
    "ja": (
        Sentence("こんにちは、はじめまして。", "こんにちわ、はじめまして。"),
        Sentence("きょうはとてもいいてんきです。", "きょうわとてもいいてんきです。"),
        Sentence("えきはどこですか。", "えきわどこですか。"),
        Sentence("あねはまいしゅうパンをやきます。", "あねわまいしゅうパンをやきます。"),
        Sentence("ねこがまどのそばでねています。"),
        Sentence("ゆうがた、こうえんをさんぽしました。"),
        Sentence("このほんはいくらですか。", "このほんわいくらですか。"),
        Sentence("こどもたちがこうていであそんでいます。"),
        Sentence("かさをかいしゃにわすれました。"),
        Sentence("ふゆはあたたかいおちゃをよくのみます。", "ふゆわあたたかいおちゃをよくのみます。"),
        Sentence("いっしょにえいがをみにいきませんか。"),
        Sentence("バスはもうすぐつきます。", "バスわもうすぐつきます。"),
        Sentence("あしたとしょかんへいきます。", "あしたとしょかんえいきます。"),
        Sentence("コーヒーとケーキをください。"),
    ),
}

# Sentences that never go into a training corpus (a test checks the banks are disjoint): the test sets' texts.
HELD_OUT: dict[str, tuple[Sentence, ...]] = {
    "en": _plain(
        "She left her umbrella on the bus this morning.",
        "The soup was too hot to eat right away.",
        "We planted a small apple tree behind the house.",
        "Please close the window before you leave.",
        "My brother plays the guitar every evening.",
        "The museum is closed on Mondays.",
        "Can you help me carry these boxes upstairs?",
        "The river was calm and the water was clear.",
        "I would like a cup of tea with milk.",
        "The dog slept by the fire all afternoon.",
        "Our neighbors are painting their fence green.",
        "He forgot to turn off the lights in the kitchen.",
        "The market sells fresh bread and cheese.",
        "It is too cold to swim in the lake today.",
        "They walked along the beach at sunset.",
        "Do you know where the nearest pharmacy is?",
    ),
    "de": _plain(
        "Morgen früh muss ich zur Bank gehen.",
        "Die Nudeln in diesem Restaurant schmecken sehr gut.",
        "Mein Freund wohnt direkt am Meer.",
        "Bitte mach das Fenster zu.",
        "Meine Mutter kocht gerade das Abendessen.",
        "Hast du heute Abend Zeit?",
        "Der kleine Hund rennt im Hof herum.",
        "Nächsten Monat fahren wir nach Hamburg.",
    ),
    "fr": _plain(
        "Demain matin, je dois aller à la banque.",
        "Les pâtes de ce restaurant sont excellentes.",
        "Mon ami habite tout près de la mer.",
        "Ferme la fenêtre, s'il te plaît.",
        "Ma mère prépare le repas dans la cuisine.",
        "Es-tu libre ce soir?",
        "Le petit chien court dans la cour.",
        "Le mois prochain, nous partons à Lyon.",
    ),
    "es": _plain(
        "Mañana por la mañana tengo que ir al banco.",
        "La sopa de este restaurante está muy rica.",
        "Mi amigo vive muy cerca del mar.",
        "Cierra la ventana, por favor.",
        "Mi madre está preparando la cena en la cocina.",
        "¿Tienes tiempo esta noche?",
        "El perrito corre por el patio.",
        "El mes que viene viajamos a Sevilla.",
    ),
    "it": _plain(
        "Domani mattina devo andare in banca.",
        "Gli spaghetti di questo ristorante sono buonissimi.",
        "Il mio amico abita vicino al mare.",
        "Chiudi la finestra, per favore.",
        "Mia madre sta preparando la cena in cucina.",
        "Sei libero stasera?",
        "Il cagnolino corre nel giardino.",
        "Il mese prossimo andiamo a Firenze.",
    ),
    "pt": _plain(
        "Amanhã de manhã tenho de ir ao banco.",
        "A sopa deste restaurante é muito boa.",
        "O meu amigo mora perto do mar.",
        "Fecha a janela, por favor.",
        "A minha mãe está a preparar o jantar na cozinha.",
        "Tens tempo esta noite?",
        "O cãozinho corre pelo quintal.",
        "No próximo mês vamos a Lisboa.",
    ),
    "ru": _plain(
        "Завтра утром мне нужно пойти в банк.",
        "В этом ресторане очень вкусный суп.",
        "Мой друг живёт рядом с морем.",
        "Закрой, пожалуйста, окно.",
        "Мама готовит ужин на кухне.",
        "Ты свободен сегодня вечером?",
        "Щенок бегает по двору.",
        "В следующем месяце мы поедем в Москву.",
    ),
    "ko": _plain(
        "내일 아침에 은행에 가야 해요.",
        "이 식당의 국수가 정말 맛있어요.",
        "제 친구는 바닷가 근처에 살아요.",
        "창문 좀 닫아 주세요.",
        "엄마가 부엌에서 저녁을 만들고 있어요.",
        "오늘 저녁에 시간 있어요?",
        "강아지가 마당에서 뛰어놀아요.",
        "다음 달에 서울에 갈 거예요.",
    ),
    "zh": (
        Sentence("明天早上我要去银行。", "ming2 tian1 zao3 shang5 wo3 yao4 qu4 yin2 hang2."),
        Sentence("这家饭店的面条很好吃。", "zhe4 jia1 fan4 dian4 de5 mian4 tiao2 hen3 hao3 chi1."),
        Sentence("我的朋友住在海边。", "wo3 de5 peng2 you5 zhu4 zai4 hai3 bian1."),
        Sentence("请把窗户关上。", "qing3 ba3 chuang1 hu5 guan1 shang4."),
        Sentence("妈妈在厨房里做饭。", "ma1 ma5 zai4 chu2 fang2 li3 zuo4 fan4."),
        Sentence("你今天晚上有空吗？", "ni3 jin1 tian1 wan3 shang5 you3 kong4 ma5?"),
        Sentence("小狗在院子里跑来跑去。", "xiao3 gou3 zai4 yuan4 zi5 li3 pao3 lai2 pao3 qu4."),
        Sentence("我们下个月去北京。", "wo3 men5 xia4 ge4 yue4 qu4 bei3 jing1."),
    ),
    "ja": (
        Sentence("あさごはんにパンをたべました。"),
        Sentence("わたしはまいあさコーヒーをのみます。", "わたしわまいあさコーヒーをのみます。"),
        Sentence("らいしゅう、きょうとへいきます。", "らいしゅう、きょうとえいきます。"),
        Sentence("このみせのラーメンはおいしいです。", "このみせのラーメンわおいしいです。"),
        Sentence("でんしゃがえきにつきました。"),
        Sentence("いもうとはピアノをひきます。", "いもうとわピアノをひきます。"),
        Sentence("まどをあけてもいいですか。"),
        Sentence("きのうはとてもさむかったです。", "きのうわとてもさむかったです。"),
    ),
}

# Languages written without spaces between sentences.
NO_SPACE_LANGUAGES = frozenset({"zh", "ja"})


def join_sentences(language: str, sentences: list[Sentence]) -> tuple[str, str]:
    """``(text, spoken)`` of several sentences read as one utterance."""
    sep = "" if language in NO_SPACE_LANGUAGES else " "
    text = sep.join(s.text for s in sentences)
    # pinyin is spaced Latin text, so spoken Mandarin always needs the space
    spoken_sep = " " if language == "zh" else sep
    return text, spoken_sep.join(s.speech for s in sentences)
