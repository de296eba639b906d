# Generates crates/adapters/src/knx/vectors.json: values xknx 4.0.0 encodes, by DPT.
import json
from xknx.dpt import DPTBase, DPTArray, DPTBinary
cases = [
 ("1.001",[True,False]),("1.002",[True]),("1.009",[False]),("1.018",[True]),
 ("5.001",[0,50,100,30,10,33.3]),("5.003",[0,180,360,90]),("5.004",[0,255,42]),("5.010",[0,200,255]),
 ("6.001",[-128,0,127,-5]),("6.010",[-1,100]),
 ("7.001",[0,65535,1234]),("7.002",[500]),("7.005",[3600]),("7.013",[12000]),("7.600",[2700]),
 ("8.001",[-32768,32767,-1]),("8.005",[-60]),("8.010",[12.34,-0.5,327.67]),("8.011",[-90]),
 ("9.001",[21.5,-5.25,0,0.01,-273,36.6,1234.56,0.005,-0.006]),("9.004",[12345.6,0.5]),("9.005",[3.2]),
 ("9.007",[45.5]),("9.008",[612,1500.5]),("9.024",[2.75]),("9.020",[-12.5,670433.28,-671088.64]),
 ("12.001",[0,4294967295,123456789]),("12.100",[86400]),("12.1200",[1000]),
 ("13.001",[-2147483648,2147483647,-42]),("13.010",[123456]),("13.013",[98765]),("13.002",[-3]),("13.100",[7200]),
 ("14.019",[1.5]),("14.056",[1234.5,0.1,-3.4e38,1234.5678,3.14159265,-0.000123456789]),("14.068",[21.25]),("14.031",[1e9]),("14.033",[50.0]),
 ("16.000",["hello","KNX is fine!","", "14 characters"]),("16.001",["café"]),
 ("17.001",[1,64,5]),("18.001",[1,64]),("20.102",[0,1,2,3,4]),
]
out=[]
for dpt, values in cases:
    t = DPTBase.parse_transcoder(dpt)
    for v in values:
        if dpt=="18.001":
            from xknx.dpt.dpt_18 import SceneControl
            p = t.to_knx(SceneControl(scene_number=v, learn=False))
            back = t.from_knx(p).scene_number
        elif dpt=="20.102":
            p = DPTArray((v,)); back = t.from_knx(p).name
        elif dpt.startswith("1."):
            p = t.to_knx(v); back = int(bool(t.from_knx(p).value)) if hasattr(t.from_knx(p),'value') else int(t.from_knx(p))
        else:
            p = t.to_knx(v); back = t.from_knx(p)
        if isinstance(p, DPTBinary):
            raw = {"small": p.value}
        else:
            raw = {"bytes": bytes(p.value).hex()}
        out.append({"dpt": dpt, "value": v, **raw, "xknx": back})
print(json.dumps(out, ensure_ascii=False, indent=0))
